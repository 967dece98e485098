import DraftErrors
import DraftFormats
import DraftInference
import DraftTokenizer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A target behind an OpenAI-compatible `/v1/completions` endpoint (vLLM, TGI, llama.cpp's `llama-server`), for
/// targets too large to run here. Prompts go as token ids (the completions API's `prompt: [int]`), so the server
/// reads exactly the tokens the shards record; responses come back as text and are re-tokenized with the target's
/// tokenizer (`--tokenizer`).
///
/// Each request has a timeout and is retried with exponential backoff on a refused connection, a timeout or a 5xx
/// answer, so a server restarted mid-run is survived; an answer that is not a completions response is an error at
/// once. The API key, when set, goes only in this server's `Authorization` header: it is never printed, logged or
/// written anywhere.
public final class CompletionsTarget: DistillTarget {
    public let base: URL
    public let tokenizer: any Tokenizer
    public var name: String { base.absoluteString }
    let chatTemplate: String?
    let apiKey: String?
    let model: String?
    let session: URLSession
    /// Per request; a long generation on a loaded server can take a while.
    static let requestTimeout: TimeInterval = 300
    static let maxAttempts = 10
    static let maxBackoff: TimeInterval = 8

    /// Connects to `url` (its `/v1/models` must answer): an unreachable server is bad input, refused before anything
    /// is written.
    public init(url: String, tokenizer: any Tokenizer, tokenizerPath: String, apiKey: String?) throws {
        var text = url
        while text.hasSuffix("/") { text.removeLast() }
        if text.hasSuffix("/v1") { text.removeLast(3) }
        guard let base = URL(string: text), base.scheme == "http" || base.scheme == "https", base.host != nil else {
            throw InputError("--target \(url): expected a model file or an http(s):// URL of an OpenAI-compatible server")
        }
        self.base = base
        self.tokenizer = tokenizer
        self.apiKey = apiKey
        chatTemplate = try Self.chatTemplate(tokenizerPath: tokenizerPath)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Self.requestTimeout
        configuration.httpMaximumConnectionsPerHost = 256
        session = URLSession(configuration: configuration)
        // The first model the server lists (vLLM requires the field; llama-server ignores it).
        let probe = try Self.send(session: session, request: Self.request(base.appendingPathComponent("v1/models"),
                                                                             body: nil, apiKey: apiKey, timeout: 10))
        switch probe {
        case .unreachable(let reason):
            throw InputError("--target \(url): cannot reach the server (\(reason)); expected an OpenAI-compatible server answering GET /v1/models")
        case .answered(let status, let data):
            guard status == 200, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw InputError("--target \(url): GET /v1/models answered HTTP \(status) \(Self.excerpt(data)); expected an OpenAI-compatible server's model list")
            }
            model = ((object["data"] as? [[String: Any]])?.first?["id"] as? String)
        }
    }

    /// The chat template that goes with `--tokenizer`: a GGUF's `tokenizer.chat_template`, or the
    /// `tokenizer_config.json` (`chat_template`) / `chat_template.jinja` beside a `tokenizer.json`.
    static func chatTemplate(tokenizerPath: String) throws -> String? {
        if tokenizerPath.lowercased().hasSuffix(".gguf") {
            let metadata = try GGUFMetadata(path: tokenizerPath)
            if case .string(let s)? = metadata["tokenizer.chat_template"] { return s }
            return nil
        }
        let directory = (tokenizerPath as NSString).deletingLastPathComponent
        let config = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: config),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let s = object["chat_template"] as? String { return s }
            if let list = object["chat_template"] as? [[String: Any]],
               let s = (list.first { ($0["name"] as? String) == "default" } ?? list.first)?["template"] as? String { return s }
        }
        let jinja = (directory as NSString).appendingPathComponent("chat_template.jinja")
        return FileManager.default.contents(atPath: jinja).map { String(decoding: $0, as: UTF8.self) }
    }

    public func maxPromptTokens(maxNewTokens: Int) -> Int { Int.max }

    private func template() throws -> ChatTemplate {
        guard let chatTemplate else {
            throw InputError("--tokenizer: no chat template beside it (tokenizer_config.json or a GGUF's tokenizer.chat_template); conversations and --magpie need one")
        }
        return try ChatTemplate(template: chatTemplate, bosToken: tokenizer.bosTokenID.map { tokenizer.decode([$0]) })
    }

    public func render(_ entry: PromptEntry) throws -> (text: String, ids: [Int32]) {
        switch entry.content {
        case .text(let text): return (text, tokenizer.encode(text))
        case .messages(let turns):
            let text = try template().render(turns)
            return (text, tokenizer.encode(text))
        }
    }

    public func magpieOpening() throws -> (text: String, ids: [Int32]) {
        let text = try template().openUserTurn()
        return (text, tokenizer.encode(text))
    }

    public func answer(_ jobs: [DistillJob], maxNewTokens: Int, batch: Int, topK: Int?,
                       completed: (DistillAnswer) throws -> Void) throws {
        precondition(topK == nil, "top-K through a URL is refused up front")
        guard !jobs.isEmpty else { return }
        // `batch` requests in flight; answers are handed over on the calling thread, one at a time, in the order
        // they arrive.
        final class Shared: @unchecked Sendable {
            let lock = NSCondition()
            var next = 0
            var answers: [Result<DistillAnswer, Error>] = []
            var running = 0
            var stop = false
        }
        let shared = Shared()
        shared.running = min(batch, jobs.count)
        for _ in 0..<shared.running {
            Thread.detachNewThread { [self] in
                while true {
                    shared.lock.lock()
                    guard !shared.stop, shared.next < jobs.count else {
                        shared.running -= 1
                        shared.lock.broadcast()
                        shared.lock.unlock()
                        return
                    }
                    let job = jobs[shared.next]
                    shared.next += 1
                    shared.lock.unlock()
                    let result = Result { try complete(job, maxNewTokens: maxNewTokens) }
                    shared.lock.lock()
                    shared.answers.append(result)
                    shared.lock.broadcast()
                    shared.lock.unlock()
                }
            }
        }
        var failure: Error?
        shared.lock.lock()
        while true {
            while shared.answers.isEmpty && shared.running > 0 { shared.lock.wait() }
            if shared.answers.isEmpty { break }
            let ready = shared.answers
            shared.answers.removeAll()
            shared.lock.unlock()
            for result in ready where failure == nil {
                do { try completed(try result.get()) } catch { failure = error }
            }
            shared.lock.lock()
            if failure != nil { shared.stop = true }
        }
        shared.lock.unlock()
        if let failure { throw failure }
    }

    /// One job's completion, retried while the server is unreachable or failing.
    func complete(_ job: DistillJob, maxNewTokens: Int) throws -> DistillAnswer {
        var body: [String: Any] = [
            "prompt": job.promptIDs.map(Int.init), "max_tokens": maxNewTokens, "temperature": Double(job.temperature),
            "top_p": 1.0, "seed": Int(job.seed & 0x7FFF_FFFF), "stream": false, "n": 1,
        ]
        if let model { body["model"] = model }
        let endpoint = base.appendingPathComponent("v1/completions")
        let request = try Self.request(endpoint, body: body, apiKey: apiKey, timeout: Self.requestTimeout)
        var delay: TimeInterval = 0.5
        var lastFailure = ""
        for attempt in 1...Self.maxAttempts {
            switch try Self.send(session: session, request: request) {
            case .unreachable(let reason):
                lastFailure = reason
            case .answered(let status, let data) where status >= 500 || status == 429:
                lastFailure = "HTTP \(status) \(Self.excerpt(data))"
            case .answered(let status, let data):
                guard status == 200 else {
                    throw CompletionsError("\(endpoint.absoluteString): HTTP \(status) \(Self.excerpt(data)) (expected 200 with a completions response)")
                }
                return try parse(data, job: job, endpoint: endpoint)
            }
            if attempt < Self.maxAttempts {
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, Self.maxBackoff)
            }
        }
        throw CompletionsError("\(endpoint.absoluteString): no answer after \(Self.maxAttempts) attempts over about a minute (last: \(lastFailure)); the server is down")
    }

    private func parse(_ data: Data, job: DistillJob, endpoint: URL) throws -> DistillAnswer {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let choice = (object["choices"] as? [[String: Any]])?.first,
              let text = choice["text"] as? String else {
            throw CompletionsError("\(endpoint.absoluteString): answered \(Self.excerpt(data)), expected a completions response with choices[0].text")
        }
        let finish: FinishReason
        switch choice["finish_reason"] as? String {
        case "stop", "eos", "stop_sequence"?: finish = .eos
        case "length"?: finish = .length
        case let other:
            throw CompletionsError("\(endpoint.absoluteString): finish_reason \(other ?? "missing"), expected \"stop\" or \"length\"")
        }
        return DistillAnswer(index: job.index, text: text, ids: tokenizer.encode(text), finishReason: finish)
    }

    static func request(_ url: URL, body: [String: Any]?, apiKey: String?, timeout: TimeInterval) throws -> URLRequest {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        if let body {
            request.httpMethod = "POST"
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let apiKey, !apiKey.isEmpty { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        return request
    }

    /// One request, synchronously: the status and body, or why no answer came (connection refused, timed out).
    static func send(session: URLSession, request: URLRequest) throws -> Reply {
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var result: Reply = .unreachable("no answer") }
        let box = Box()
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                box.result = .unreachable(error.localizedDescription)
            } else if let http = response as? HTTPURLResponse {
                box.result = .answered(http.statusCode, data ?? Data())
            }
            done.signal()
        }
        task.resume()
        done.wait()
        return box.result
    }

    static func excerpt(_ data: Data) -> String {
        let text = String(decoding: data.prefix(120), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
        return "'\(text)\(data.count > 120 ? "..." : "")'"
    }
}

/// What one request got: an HTTP answer, or none (connection refused, timed out) and why.
enum Reply {
    case answered(Int, Data)
    case unreachable(String)
}

/// A server that answered, but not as an OpenAI-compatible completions endpoint does (or stayed down): a runtime
/// failure, exit 1.
public struct CompletionsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
