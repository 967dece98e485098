import DraftData
import DraftDistill
import Foundation
import XCTest

/// The distill directory's files on their own: the response log's repair of a torn last line, and shards written
/// from records read back through `DataSource` and `MixtureLoader` with their loss masks and top-K.
final class DistillShardTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func record(_ id: String, prompt: [Int32], response: [Int32], finish: String, k: Int? = nil) -> ResponseRecord {
        var r = ResponseRecord(promptID: id, set: nil, temperature: 0, prompt: "p", promptIDs: prompt, response: "r",
                               responseIDs: response, finishReason: finish, seed: 1)
        if let k {
            let rows = response.count + (finish == "eos" ? 1 : 0)
            r.topKIDs = (0..<(rows * k)).map { Int32($0 % 50) }
            r.topKLogprobs = (0..<(rows * k)).map { -Float($0) / 10 }
        }
        return r
    }

    /// A kill while a line was being written leaves a partial last line: reopening drops it and keeps the rest;
    /// appending afterwards yields only complete lines.
    func testTornLastLineIsDropped() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("responses.jsonl")
        do {
            let log = try ResponseLog(url: url)
            try log.append(record("a", prompt: [1, 2], response: [3], finish: "eos"))
            try log.append(record("b", prompt: [1, 2], response: [4], finish: "length"))
        }
        let full = try Data(contentsOf: url)
        try full.prefix(full.count - 7).write(to: url)  // the second line cut mid-way
        let reopened = try ResponseLog(url: url)
        XCTAssertEqual(reopened.records.map(\.promptID), ["a"])
        try reopened.append(record("c", prompt: [5], response: [6, 7], finish: "eos"))
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        for line in lines { XCTAssertNoThrow(try JSONDecoder().decode(ResponseRecord.self, from: Data(line.utf8))) }
        // A malformed line that is not the last is refused, naming its line.
        try Data("{\"x\":1}\n".utf8 + (try Data(contentsOf: url))).write(to: url)
        XCTAssertThrowsError(try ResponseLog(url: url)) { XCTAssertTrue("\($0)".contains("responses.jsonl:1")) }
    }

    /// Shards hold prompt + response + EOS per record; targets in prompt regions (and the EOS of a response cut by
    /// length) come out of the loader as -1, and the top-K rows sit at the trained positions only.
    func testShardsMaskPromptsAndAlignTopK() throws {
        let dir = try temporaryDirectory()
        let k = 3
        let records = [record("a", prompt: [10, 11, 12], response: [20, 21], finish: "eos", k: k),
                       record("b", prompt: [13, 14], response: [22, 23, 24], finish: "length", k: k)]
        let written = try DistillShards.write(train: records, validation: [], to: dir, eos: 0, vocabSize: 100,
                                              fingerprint: "fp", topK: k)
        XCTAssertEqual(written.train.tokens, 6 + 6)
        let manifest: [String: Any] = ["format": DistillShardManifest.format, "complete": true, "top_k": k,
                                       "train": ["files": written.train.files, "tokens": written.train.tokens, "documents": 2],
                                       "validation": ["files": [String](), "tokens": 0, "documents": 0]]
        try JSONSerialization.data(withJSONObject: manifest).write(to: dir.appendingPathComponent("manifest.json"))
        let source = try DataSource(name: "kd", path: dir.path)
        XCTAssertNotNil(source.trainMasks)
        let loader = try MixtureLoader(sources: [source], stages: [StageMixture(name: "s", weights: ["kd": 1])],
                                       seqLen: 11, seed: 0)
        XCTAssertEqual(loader.teacherK, k)
        let sample = SampleReference(source: 0, shard: 0, start: 0)
        var tokens = [Int32](repeating: 0, count: 11), targets = tokens
        tokens.withUnsafeMutableBufferPointer { t in
            targets.withUnsafeMutableBufferPointer { loader.fill(sample, tokens: t.baseAddress!, targets: $0.baseAddress!) }
        }
        XCTAssertEqual(tokens, [10, 11, 12, 20, 21, 0, 13, 14, 22, 23, 24])
        // Targets: positions 1...11 = 11 12 20 21 0(eos) 13 14 22 23 24 0(eos after length).
        XCTAssertEqual(targets, [-1, -1, 20, 21, 0, -1, -1, 22, 23, 24, -1])
        var ids = [Int32](repeating: 7, count: 11 * k), logprobs = [Float](repeating: 7, count: 11 * k)
        ids.withUnsafeMutableBufferPointer { i in
            logprobs.withUnsafeMutableBufferPointer { loader.fillTeacher(sample, ids: i.baseAddress!, logprobs: $0.baseAddress!) }
        }
        for (row, target) in targets.enumerated() {
            let rowIDs = Array(ids[(row * k)..<(row * k + k)])
            if target < 0 { XCTAssertEqual(rowIDs, [-1, -1, -1], "row \(row)") } else { XCTAssertNotEqual(rowIDs[0], -1, "row \(row)") }
        }
        // Record a's rows 0, 1, 2 (response tokens 20, 21 and its EOS) are at targets 2, 3, 4.
        XCTAssertEqual(Array(ids[(2 * k)..<(5 * k)]), (0..<(3 * k)).map { Int32($0 % 50) })
        XCTAssertEqual(logprobs[2 * k + 1], -0.1, accuracy: 1e-6)
    }
}
