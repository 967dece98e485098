import DraftErrors
import Foundation

/// One line of `responses.jsonl`: the target's response to one prompt at one temperature. DESIGN.md's fields
/// (`prompt_id`, `set`, `temperature`, `prompt`, `response`, `response_ids`, `finish_reason`) plus what rebuilding the
/// shards from the log alone needs (`prompt_ids`, and with `--top-k-logits` the target's top-K per trained position).
public struct ResponseRecord: Codable, Equatable, Sendable {
    public var promptID: String
    public var set: String?
    public var temperature: Float
    public var prompt: String
    public var promptIDs: [Int32]
    public var response: String
    public var responseIDs: [Int32]
    public var finishReason: String
    public var seed: UInt64
    /// Row-major [rows][K]; one row per response token, plus one for the stop token when `finish_reason` is `eos`.
    public var topKIDs: [Int32]?
    public var topKLogprobs: [Float]?

    enum CodingKeys: String, CodingKey {
        case set, temperature, prompt, response, seed
        case promptID = "prompt_id", promptIDs = "prompt_ids", responseIDs = "response_ids"
        case finishReason = "finish_reason", topKIDs = "top_k_ids", topKLogprobs = "top_k_logprobs"
    }

    public init(promptID: String, set: String?, temperature: Float, prompt: String, promptIDs: [Int32], response: String,
                responseIDs: [Int32], finishReason: String, seed: UInt64, topKIDs: [Int32]? = nil,
                topKLogprobs: [Float]? = nil) {
        self.promptID = promptID
        self.set = set
        self.temperature = temperature
        self.prompt = prompt
        self.promptIDs = promptIDs
        self.response = response
        self.responseIDs = responseIDs
        self.finishReason = finishReason
        self.seed = seed
        self.topKIDs = topKIDs
        self.topKLogprobs = topKLogprobs
    }

    public var key: ResponseKey { ResponseKey(promptID: promptID, temperature: temperature) }
}

/// A (prompt, temperature) pair: what must appear in `responses.jsonl` exactly once.
public struct ResponseKey: Hashable, Sendable {
    public var promptID: String
    public var temperature: Float
}

/// `responses.jsonl`, the run's source of truth: records are appended one complete line at a time and flushed to
/// disk before the next, so a killed run loses at most the line it was writing. Reopening drops such a torn last
/// line (truncating the file to its last complete record); a malformed line anywhere else is refused.
public final class ResponseLog {
    public let url: URL
    public private(set) var records: [ResponseRecord]
    private let handle: FileHandle
    private let encoder: JSONEncoder

    public init(url: URL) throws {
        self.url = url
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw InputError("\(url.path): cannot create it")
            }
        }
        let data = try Data(contentsOf: url)
        var records: [ResponseRecord] = []
        var goodBytes = 0
        var lineStart = 0
        var lineNumber = 0
        let decoder = JSONDecoder()
        while lineStart < data.count {
            lineNumber += 1
            let newline = data[lineStart...].firstIndex(of: UInt8(ascii: "\n"))
            let line = data[lineStart..<(newline ?? data.count)]
            let record = try? decoder.decode(ResponseRecord.self, from: line)
            if newline == nil {
                // The last line, cut off by a kill while it was being written (or complete but unterminated).
                if let record { records.append(record); goodBytes = data.count }
                break
            }
            guard let record else {
                throw InputError("\(url.path):\(lineNumber): not a response record (expected one JSON object with prompt_id, temperature, prompt_ids, response_ids, finish_reason)")
            }
            records.append(record)
            lineStart = newline! + 1
            goodBytes = lineStart
        }
        self.records = records
        handle = try FileHandle(forUpdating: url)
        try handle.truncate(atOffset: UInt64(goodBytes))
        try handle.seekToEnd()
        if goodBytes > 0, data[goodBytes - 1] != UInt8(ascii: "\n") {
            try handle.write(contentsOf: Data("\n".utf8))
            try handle.synchronize()
        }
    }

    deinit { try? handle.close() }

    /// Appends one record as one line, flushed to disk before returning.
    public func append(_ record: ResponseRecord) throws {
        var line = try encoder.encode(record)
        line.append(UInt8(ascii: "\n"))
        try handle.write(contentsOf: line)
        try handle.synchronize()
        records.append(record)
    }
}
