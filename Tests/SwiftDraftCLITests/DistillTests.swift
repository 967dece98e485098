import DraftData
import DraftDistill
import Foundation
import XCTest

/// `swiftdraft distill` on the real target (SmolLM2-135M-Instruct Q4_1), natively and through a real `llama-server`:
/// reproducibility against `generate`, crash safety under `kill -9`, and what the shards hold.
final class DistillTests: XCTestCase {
    static let cache: URL = {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty { return URL(fileURLWithPath: c) }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }()
    static let gguf = cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func target() throws -> String {
        guard FileManager.default.fileExists(atPath: Self.gguf.path) else {
            XCTFail("\(Self.gguf.path) is missing: run scripts/fetch-assets.sh")
            throw XCTSkip("no SmolLM2 GGUF")
        }
        return Self.gguf.path
    }

    /// A prompt file of `count` chat prompts (and one raw-text prompt), ids p0, p1, ...
    func writePrompts(_ directory: URL, count: Int) throws -> URL {
        let topics = ["the moon", "bread", "rivers", "a cat", "prime numbers", "winter", "the sea", "trains", "music",
                      "gardens", "clocks", "bees"]
        var lines = (0..<count).map { i in
            "{\"id\": \"p\(i)\", \"set\": \"instructions\", \"messages\": [{\"role\": \"user\", \"content\": \"Write one sentence about \(topics[i % topics.count]).\"}]}"
        }
        lines.append("{\"id\": \"raw\", \"set\": \"text\", \"prompt\": \"Once upon a time\"}")
        let url = directory.appendingPathComponent("prompts.jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    struct Record {
        let promptID: String
        let temperature: Double
        let promptIDs: [Int32]
        let responseIDs: [Int32]
        let finish: String
        let text: String
    }

    /// Every line of responses.jsonl, each of which must be a JSON object with DESIGN.md's fields.
    func readRecords(_ directory: URL) throws -> [Record] {
        let text = try String(contentsOf: directory.appendingPathComponent("responses.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").enumerated().map { n, line in
            let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "line \(n + 1)")
            for field in ["prompt_id", "set", "temperature", "prompt", "response", "response_ids", "finish_reason"] {
                XCTAssertNotNil(j[field], "line \(n + 1) lacks \(field)")
            }
            return Record(promptID: try XCTUnwrap(j["prompt_id"] as? String), temperature: try XCTUnwrap(j["temperature"] as? Double),
                          promptIDs: try XCTUnwrap(j["prompt_ids"] as? [Int]).map(Int32.init),
                          responseIDs: try XCTUnwrap(j["response_ids"] as? [Int]).map(Int32.init),
                          finish: try XCTUnwrap(j["finish_reason"] as? String), text: try XCTUnwrap(j["response"] as? String))
        }
    }

    /// Each (prompt, temperature) exactly once, and the shards hold exactly the records' tokens, in prompt then
    /// temperature order, with the mask on the response tokens (and on the EOS of responses the target ended).
    func checkCompleteRun(_ directory: URL, promptIDs: [String], temperatures: [Double], eos: Int32) throws {
        let records = try readRecords(directory)
        let keys = records.map { "\($0.promptID)@\($0.temperature)" }
        XCTAssertEqual(keys.count, Set(keys).count, "a (prompt, temperature) recorded twice")
        XCTAssertEqual(Set(keys), Set(promptIDs.flatMap { p in temperatures.map { "\(p)@\($0)" } }))
        let byKey = Dictionary(uniqueKeysWithValues: records.map { ("\($0.promptID)@\($0.temperature)", $0) })
        var expectedTokens: [Int32] = [], expectedMask: [UInt8] = []
        for p in promptIDs {
            for t in temperatures {
                let r = byKey["\(p)@\(t)"]!
                expectedTokens += r.promptIDs + r.responseIDs + [eos]
                expectedMask += [UInt8](repeating: 0, count: r.promptIDs.count) + [UInt8](repeating: 1, count: r.responseIDs.count)
                    + [r.finish == "eos" ? 1 : 0]
            }
        }
        let source = try DataSource(name: "kd", path: directory.path)
        var tokens: [Int32] = [], mask: [UInt8] = []
        for (shard, masks) in zip(source.train, try XCTUnwrap(source.trainMasks)) {
            var ids = [Int32](repeating: 0, count: shard.tokenCount), bytes = [UInt8](repeating: 0, count: shard.tokenCount)
            ids.withUnsafeMutableBufferPointer { shard.read(from: 0, count: shard.tokenCount, into: $0.baseAddress!) }
            bytes.withUnsafeMutableBufferPointer { masks.read(from: 0, count: shard.tokenCount, into: $0.baseAddress!) }
            tokens += ids
            mask += bytes
        }
        XCTAssertEqual(tokens, expectedTokens, "the shards hold exactly the records' tokens")
        XCTAssertEqual(mask, expectedMask, "loss mask: response tokens only")
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["complete"] as? Bool, true)
    }

    func distill(_ arguments: [String], environment: [String: String] = [:]) throws -> CLI.Result {
        try CLI.run(["distill"] + arguments, environment: environment)
    }

    /// Greedy responses are `generate`'s greedy output token for token (same prompts, same max-new-tokens); sampled
    /// ones repeat exactly with the same seed and change with another.
    func testGreedyMatchesGenerateAndSamplingFollowsTheSeed() throws {
        let model = try target()
        let work = try CLI.temporaryDirectory("distill-repro")
        defer { try? FileManager.default.removeItem(at: work) }
        let prompts = try writePrompts(work, count: 4)
        func run(_ name: String, seed: Int, extra: [String] = []) throws -> [Record] {
            let out = work.appendingPathComponent(name)
            let r = try distill(["--target", model, "--prompts", prompts.path, "--output", out.path, "--temperatures", "0,0.8",
                                 "--max-new-tokens", "16", "--batch", "4", "--seed", "\(seed)"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try readRecords(out)
        }
        let k = 4
        let first = try run("a", seed: 5, extra: ["--top-k-logits", "\(k)"])
        try checkTopK(work.appendingPathComponent("a"), k: k)
        let generate = try CLI.run(["generate", "--model", model, "--prompts", prompts.path, "--max-new-tokens", "16", "--json"])
        XCTAssertEqual(generate.status, 0, generate.stderr)
        let greedy = try generate.stdout.split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(greedy.count, 5)
        for g in greedy {
            let id = try XCTUnwrap(g["id"] as? String)
            let record = try XCTUnwrap(first.first { $0.promptID == id && $0.temperature == 0 }, id)
            XCTAssertEqual(record.responseIDs, try XCTUnwrap(g["output_ids"] as? [Int]).map(Int32.init), "greedy \(id)")
            XCTAssertEqual(record.finish, g["finish_reason"] as? String)
        }
        func sampled(_ records: [Record]) -> [String: [Int32]] {
            Dictionary(uniqueKeysWithValues: records.filter { $0.temperature > 0 }.map { ($0.promptID, $0.responseIDs) })
        }
        XCTAssertEqual(sampled(try run("b", seed: 5)), sampled(first), "same seed, same responses")
        XCTAssertNotEqual(sampled(try run("c", seed: 6)), sampled(first), "another seed, other responses")
    }

    /// With `--top-k-logits`, a greedy response's token is its row's most likely id (so rows and tokens are aligned),
    /// rows are sorted log-probabilities below 0, and the shards' top-K sidecar holds the same rows at the trained
    /// positions.
    func checkTopK(_ directory: URL, k: Int) throws {
        let text = try String(contentsOf: directory.appendingPathComponent("responses.jsonl"), encoding: .utf8)
        var checked = 0
        for line in text.split(separator: "\n") {
            let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let ids = try XCTUnwrap(j["top_k_ids"] as? [Int]), logprobs = try XCTUnwrap(j["top_k_logprobs"] as? [Double])
            let response = try XCTUnwrap(j["response_ids"] as? [Int])
            let rows = response.count + (j["finish_reason"] as? String == "eos" ? 1 : 0)
            XCTAssertEqual(ids.count, rows * k)
            for r in 0..<rows {
                let row = Array(logprobs[(r * k)..<(r * k + k)])
                XCTAssertEqual(row, row.sorted(by: >))
                XCTAssertLessThanOrEqual(row[0], 0)
                if j["temperature"] as? Double == 0, r < response.count {
                    XCTAssertEqual(ids[r * k], response[r], "greedy token = top-1 of its row")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
        let source = try DataSource(name: "kd", path: directory.path)
        let teacher = try XCTUnwrap(source.teacher)
        XCTAssertEqual(teacher.first?.k, k)
        let masks = try XCTUnwrap(source.trainMasks)
        for (shard, (topK, mask)) in zip(source.train, zip(teacher, masks)) {
            var rowIDs = [Int32](repeating: 0, count: shard.tokenCount * k), rowLogprobs = [Float](repeating: 0, count: shard.tokenCount * k)
            var bytes = [UInt8](repeating: 0, count: shard.tokenCount)
            rowIDs.withUnsafeMutableBufferPointer { i in
                rowLogprobs.withUnsafeMutableBufferPointer { topK.read(from: 0, count: shard.tokenCount, ids: i.baseAddress!, logprobs: $0.baseAddress!) }
            }
            bytes.withUnsafeMutableBufferPointer { mask.read(from: 0, count: shard.tokenCount, into: $0.baseAddress!) }
            for t in 0..<shard.tokenCount { XCTAssertEqual(rowIDs[t * k] >= 0, bytes[t] == 1, "position \(t): a row exactly where the mask is 1") }
        }
    }

    /// `--magpie N`: the target writes the instructions (each kept or filtered with a reason) and answers them; the
    /// same command again reuses them and leaves the finished run as it was.
    func testMagpieWritesFiltersAndAnswersInstructions() throws {
        let model = try target()
        let work = try CLI.temporaryDirectory("distill-magpie")
        defer { try? FileManager.default.removeItem(at: work) }
        let out = work.appendingPathComponent("kd")
        let arguments = ["--target", model, "--magpie", "4", "--output", out.path, "--temperatures", "0", "--max-new-tokens", "40", "--seed", "2"]
        let r = try distill(arguments)
        XCTAssertEqual(r.status, 0, r.stderr)
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("manifest.json"))) as? [String: Any])
        let counts = try XCTUnwrap(manifest["counts"] as? [String: Int])
        XCTAssertEqual((counts["prompts"] ?? 0) + (counts["filtered"] ?? 0), 4)
        let records = try readRecords(out)
        XCTAssertEqual(records.count, counts["prompts"])
        let prompts = try String(contentsOf: out.appendingPathComponent("magpie-prompts.jsonl"), encoding: .utf8)
        XCTAssertEqual(prompts.split(separator: "\n").count, counts["prompts"])
        let before = try Data(contentsOf: out.appendingPathComponent("responses.jsonl"))
        let again = try distill(arguments)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("responses.jsonl")), before)
    }

    /// `kill -9` while responses are being written, then the same command again: every record exactly once, every
    /// line valid JSON, shards equal to the records.
    func testKillAndRestartNative() throws {
        let model = try target()
        let work = try CLI.temporaryDirectory("distill-kill")
        defer { try? FileManager.default.removeItem(at: work) }
        let prompts = try writePrompts(work, count: 7)
        let out = work.appendingPathComponent("kd")
        let arguments = ["distill", "--target", model, "--prompts", prompts.path, "--output", out.path,
                         "--max-new-tokens", "24", "--batch", "4", "--seed", "3"]
        try killWhenRecords(arguments, output: out, atLeast: 6)
        let partial = try readRecords(out).count
        XCTAssertLessThan(partial, 32, "the run was killed before it finished")
        let r = try CLI.run(Array(arguments))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resuming"), r.stderr)
        try checkCompleteRun(out, promptIDs: (0..<7).map { "p\($0)" } + ["raw"], temperatures: [0.6, 0.8, 1.0, 0], eos: 2)
    }

    /// Starts `swiftdraft arguments`, and kills it with SIGKILL once responses.jsonl holds `atLeast` lines.
    func killWhenRecords(_ arguments: [String], output: URL, atLeast: Int, timeout: TimeInterval = 300) throws {
        let process = Process()
        process.executableURL = try CLI.binary
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        let log = output.appendingPathComponent("responses.jsonl")
        while Date() < deadline, process.isRunning {
            let lines = (try? String(contentsOf: log, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= atLeast { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(process.isRunning, "distill finished before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The URL path against a real llama-server serving SmolLM2, killed with SIGKILL mid-run and started again: the
    /// run waits it out (retries with backoff) and completes with every record once.
    func testURLTargetSurvivesServerRestart() throws {
        let model = try target()
        let bin = try llamaBin()
        let work = try CLI.temporaryDirectory("distill-url")
        defer { try? FileManager.default.removeItem(at: work) }
        let prompts = try writePrompts(work, count: 6)
        let port = 18_000 + Int(getpid() % 1000)
        var server = try startServer(bin: bin, model: model, port: port)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let out = work.appendingPathComponent("kd")
        let process = Process()
        process.executableURL = try CLI.binary
        process.arguments = ["distill", "--target", "http://127.0.0.1:\(port)", "--tokenizer", model, "--prompts", prompts.path,
                             "--output", out.path, "--max-new-tokens", "32", "--batch", "2", "--seed", "4"]
        let errURL = work.appendingPathComponent("distill.err")
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.environment = ProcessInfo.processInfo.environment.merging(["OPENAI_API_KEY": "sk-test-secret-key"]) { $1 }
        try process.run()
        let log = out.appendingPathComponent("responses.jsonl")
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline, process.isRunning,
              ((try? String(contentsOf: log, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 5 {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(process.isRunning, "distill finished before the server could be killed")
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        Thread.sleep(forTimeInterval: 2)
        server = try startServer(bin: bin, model: model, port: port)
        process.waitUntilExit()
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 0, stderr)
        XCTAssertFalse(stderr.contains("sk-test-secret-key"))
        let manifest = try String(contentsOf: out.appendingPathComponent("manifest.json"), encoding: .utf8)
        XCTAssertFalse(manifest.contains("sk-test-secret-key"))
        try checkCompleteRun(out, promptIDs: (0..<6).map { "p\($0)" } + ["raw"], temperatures: [0.6, 0.8, 1.0, 0], eos: 2)
        // Re-tokenized text: each record's ids decode to its response text.
        for record in try readRecords(out).prefix(3) {
            let decoded = try CLI.run(["decode", "--tokenizer", model, "--ids", record.responseIDs.map(String.init).joined(separator: " ")])
            XCTAssertEqual(decoded.stdout.trimmingCharacters(in: .newlines), record.text.trimmingCharacters(in: .newlines))
        }
    }

    func llamaBin() throws -> String {
        let r = try CLI.run([Self.repository.appendingPathComponent("scripts/build-llama-cpp.sh").path],
                            environment: ["LLAMA_TARGETS": "llama-server"], executable: URL(fileURLWithPath: "/bin/bash"))
        guard r.status == 0 else { throw XCTSkip("scripts/build-llama-cpp.sh failed: \(r.stderr.suffix(500))") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// llama-server on `port`, once its /health answers.
    func startServer(bin: String, model: String, port: Int) throws -> Process {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "\(bin)/llama-server")
        server.arguments = ["-m", model, "--port", "\(port)", "--host", "127.0.0.1", "-np", "2", "-c", "4096", "-t", "2"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let data = try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/health")!),
               String(decoding: data, as: UTF8.self).contains("ok") { return server }
            Thread.sleep(forTimeInterval: 0.2)
        }
        kill(server.processIdentifier, SIGKILL)
        throw XCTSkip("llama-server did not come up on port \(port)")
    }

    /// Bad input is refused before anything is written: exit 2, one line naming what is wrong, no output directory.
    func testBadInputIsRefusedWithOneLineAndNoOutput() throws {
        let model = try target()
        let work = try CLI.temporaryDirectory("distill-bad")
        defer { try? FileManager.default.removeItem(at: work) }
        let prompts = try writePrompts(work, count: 2)
        let malformed = work.appendingPathComponent("malformed.jsonl")
        try "{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"b\", \"prompt\": \n".write(to: malformed, atomically: true, encoding: .utf8)
        let otherTokenizer = try XCTUnwrap(otherTokenizerFile(), "a tokenizer.json other than SmolLM2's in the asset cache")
        let cases: [(String, [String], String)] = [
            ("fingerprint", ["--target", model, "--tokenizer", otherTokenizer, "--prompts", prompts.path], "fingerprint"),
            ("malformed line", ["--target", model, "--prompts", malformed.path], "malformed.jsonl:2"),
            ("temperature not a number", ["--target", model, "--prompts", prompts.path, "--temperatures", "0.6,hot"], "--temperatures"),
            ("negative temperature", ["--target", model, "--prompts", prompts.path, "--temperatures", "0.6,-1"], "--temperatures"),
            ("repeated temperature", ["--target", model, "--prompts", prompts.path, "--temperatures", "0.6,0.6"], "--temperatures"),
            ("unreachable URL", ["--target", "http://127.0.0.1:9", "--tokenizer", model, "--prompts", prompts.path], "cannot reach"),
            ("top-k through a URL", ["--target", "http://127.0.0.1:9", "--tokenizer", model, "--prompts", prompts.path,
                                     "--top-k-logits", "8"], "--top-k-logits"),
        ]
        for (name, arguments, expected) in cases {
            let out = work.appendingPathComponent("out-\(name.replacingOccurrences(of: " ", with: "-"))")
            let r = try distill(arguments + ["--output", out.path])
            XCTAssertEqual(r.status, 2, "\(name): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(name): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(name) left \(out.path)")
        }
        // A finished run's directory refuses a restart with other settings, and leaves its files as they were.
        let out = work.appendingPathComponent("kd")
        let ok = try distill(["--target", model, "--prompts", prompts.path, "--output", out.path, "--temperatures", "0", "--max-new-tokens", "4"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let before = try Data(contentsOf: out.appendingPathComponent("responses.jsonl"))
        let other = try distill(["--target", model, "--prompts", prompts.path, "--output", out.path, "--temperatures", "0", "--max-new-tokens", "5"])
        XCTAssertEqual(other.status, 2, other.stderr)
        XCTAssertEqual(other.stderr.split(separator: "\n").count, 1, other.stderr)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("responses.jsonl")), before)
    }

    /// A server that lists models but answers completions with something that is not a completions response: a
    /// clear runtime error (exit 1) naming the endpoint and what was expected, not a hang or a crash.
    func testGarbageAnswerIsAClearError() throws {
        let model = try target()
        let work = try CLI.temporaryDirectory("distill-garbage")
        defer { try? FileManager.default.removeItem(at: work) }
        let prompts = try writePrompts(work, count: 1)
        let port = 19_000 + Int(getpid() % 1000)
        let script = """
            import http.server
            class H(http.server.BaseHTTPRequestHandler):
                def reply(self, body):
                    self.send_response(200); self.send_header('Content-Type', 'application/json')
                    self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
                def do_GET(self): self.reply(b'{"data": [{"id": "m"}]}')
                def do_POST(self):
                    self.rfile.read(int(self.headers['Content-Length'])); self.reply(b'<html>surprise</html>')
                def log_message(self, *a): pass
            http.server.HTTPServer(('127.0.0.1', \(port)), H).serve_forever()
            """
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = ["-c", script]
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/v1/models")!)) == nil {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let r = try distill(["--target", "http://127.0.0.1:\(port)/v1", "--tokenizer", model, "--prompts", prompts.path,
                             "--output", work.appendingPathComponent("kd").path, "--temperatures", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("/v1/completions") && r.stderr.contains("choices[0].text"), r.stderr)
    }

    func otherTokenizerFile() -> String? {
        let root = Self.cache.appendingPathComponent("tokenizers")
        guard let files = FileManager.default.enumerator(atPath: root.path) else { return nil }
        for case let file as String in files where file.hasSuffix("tokenizer.json") && !file.lowercased().contains("smollm") {
            return root.appendingPathComponent(file).path
        }
        return nil
    }
}
