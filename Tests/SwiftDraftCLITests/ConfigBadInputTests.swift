import Foundation
import XCTest

/// Bad input ends with exit code 2 and one line on stderr naming the file and the key, and writes nothing.
final class ConfigBadInputTests: XCTestCase {
    var work: URL!
    private var data: URL!

    override func setUpWithError() throws {
        work = try CLI.temporaryDirectory("badinput")
        // A tiny valid source, so each case fails only for the reason it tests.
        let text = work.appendingPathComponent("text.txt")
        try String(repeating: "def f(x):\n    return x + 1\n", count: 200).write(to: text, atomically: true, encoding: .utf8)
        data = work.appendingPathComponent("data")
        let r = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input", text.path, "--output", data.path])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    func config(model: String = "{vocab_size: 264, dim: 32, layers: 1, heads: 2, kv_heads: 1, ffn_dim: 64, max_seq_len: 32}",
                dataPath: String? = nil, stage: String = "", extra: String = "") -> String {
        """
        run: {name: bad, dir: \(work.appendingPathComponent("run").path)}
        model: \(model)
        tokenizer: bytes
        data: {seq_len: 32, sources: {code: {path: \(dataPath ?? data.path)}}}
        schedule: {global_batch_tokens: 256, micro_batch: 8, stages: [{name: s, tokens: 512, mixture: {code: 1.0}\(stage)}]}
        \(extra)
        """
    }

    func expectBadInput(_ yaml: String, naming key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = work.appendingPathComponent("config.yaml")
        try yaml.write(to: path, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", path.path])
        XCTAssertEqual(r.status, 2, "exit code; stderr: \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line on stderr, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(key), "stderr should name \(key): \(r.stderr)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("run").path),
                       "nothing may be written to the run directory", file: file, line: line)
    }

    func testSanityTheBaseConfigTrains() throws {
        let path = work.appendingPathComponent("config.yaml")
        try config().write(to: path, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", path.path, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testUnknownKey() throws {
        try expectBadInput(config(extra: "optimizer: {lr: 1.0e-3, learning_rate: 2}"), naming: "optimizer.learning_rate")
    }

    func testWrongType() throws {
        try expectBadInput(config(model: "{vocab_size: 264, dim: wide, layers: 1, heads: 2, kv_heads: 1, ffn_dim: 64, max_seq_len: 32}"),
                           naming: "model.dim")
        try expectBadInput(config(extra: "log: {every_steps: often}"), naming: "log.every_steps")
    }

    func testHeadsThatDoNotDivide() throws {
        try expectBadInput(config(model: "{vocab_size: 264, dim: 32, layers: 1, heads: 3, kv_heads: 1, ffn_dim: 64, max_seq_len: 32}"),
                           naming: "model.heads")
        try expectBadInput(config(model: "{vocab_size: 264, dim: 32, layers: 1, heads: 4, kv_heads: 3, ffn_dim: 64, max_seq_len: 32}"),
                           naming: "model.kv_heads")
    }

    func testBatchThatDoesNotDivide() throws {
        try expectBadInput(config().replacingOccurrences(of: "global_batch_tokens: 256", with: "global_batch_tokens: 320"),
                           naming: "schedule.global_batch_tokens")
    }

    func testVocabularySmallerThanTokenizer() throws {
        try expectBadInput(config(model: "{vocab_size: 200, dim: 32, layers: 1, heads: 2, kv_heads: 1, ffn_dim: 64, max_seq_len: 32}"),
                           naming: "model.vocab_size")
    }

    func testMissingDataPath() throws {
        try expectBadInput(config(dataPath: work.appendingPathComponent("nowhere").path), naming: "data.sources.code.path")
    }

    func testEmptyData() throws {
        let empty = work.appendingPathComponent("empty.txt")
        try "".write(to: empty, atomically: true, encoding: .utf8)
        let out = work.appendingPathComponent("empty-shards")
        let r = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input", empty.path, "--output", out.path])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains(empty.path), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no partial shard directory")
        // An empty shard directory given as a source.
        let hollow = work.appendingPathComponent("hollow")
        try FileManager.default.createDirectory(at: hollow, withIntermediateDirectories: true)
        try expectBadInput(config(dataPath: hollow.path), naming: "data.sources.code.path")
    }
}
