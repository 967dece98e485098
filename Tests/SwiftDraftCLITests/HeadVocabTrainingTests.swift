import DraftCheckpoint
import DraftData
import DraftModel
import DraftTraining
import Foundation
import XCTest

/// `model.head_vocab` through `swiftdraft train`: the full vocabulary trains exactly as the ordinary head, a subset
/// is ranked once on its source, reported as `head_coverage`, stored in the checkpoint and kept on resume; bad values
/// are refused naming the key.
final class HeadVocabTrainingTests: XCTestCase {
    private static let steps = 6

    private func subset(_ k: Int) -> [String] {
        ["--set", "model.head_vocab=\(k)", "--set", "model.head_vocab_source=code"]
    }

    func testFullVocabularyHeadTrainsBitIdenticallyToTheOrdinaryHead() throws {
        let fixture = try RunFixture("headvocab-full")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: Self.steps)
        let plain = fixture.work.appendingPathComponent("plain"), full = fixture.work.appendingPathComponent("full")
        let limit = ["--max-steps", "\(Self.steps)"]
        var r = try fixture.train(config: config, runDirectory: plain, arguments: limit)
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try fixture.train(config: config, runDirectory: full, arguments: limit + subset(264))
        XCTAssertEqual(r.status, 0, r.stderr)

        let a = try stepLosses(plain), b = try stepLosses(full)
        XCTAssertEqual(a.count, Self.steps)
        XCTAssertEqual(a.mapValues(\.bitPattern), b.mapValues(\.bitPattern), "per-step losses")
        let ta = try checkpointTensors(checkpoint(plain, step: Self.steps))
        let tb = try checkpointTensors(checkpoint(full, step: Self.steps))
        XCTAssertEqual(Set(ta.keys), Set(tb.keys))
        for (name, values) in ta { XCTAssertEqual(values.map(\.bitPattern), tb[name]?.map(\.bitPattern), name) }
        let coverage = try readMetrics(full).compactMap { $0["head_coverage"] as? Double }
        XCTAssertEqual(coverage, [Double](repeating: 1, count: Self.steps))
        XCTAssertTrue(try readMetrics(plain).allSatisfy { $0["head_coverage"] == nil })
        let ids = try CheckpointReader(url: checkpoint(full, step: Self.steps)).readInt64s("head_ids", in: .data)
        XCTAssertEqual(ids, (0..<264).map { Int64($0) })
    }

    func testSubsetHeadIsRankedOnceReportedAndKeptOnResume() throws {
        let fixture = try RunFixture("headvocab-subset")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 3)
        let straight = fixture.work.appendingPathComponent("straight"), resumed = fixture.work.appendingPathComponent("resumed")
        var r = try fixture.train(config: config, runDirectory: straight, arguments: ["--max-steps", "\(Self.steps)"] + subset(40))
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try fixture.train(config: config, runDirectory: resumed, arguments: ["--max-steps", "3"] + subset(40))
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try fixture.train(config: config, runDirectory: resumed, arguments: ["--max-steps", "\(Self.steps)"] + subset(40))
        XCTAssertEqual(r.status, 0, r.stderr)

        // The ids: the 40 most frequent targets of the source's training shards (ties to the smaller id), counted
        // here independently of the trainer.
        let source = try DataSource(name: "code", path: fixture.data.path)
        var counts = [Int](repeating: 0, count: 264)
        for shard in source.train {
            var tokens = [Int32](repeating: 0, count: shard.tokenCount)
            tokens.withUnsafeMutableBufferPointer { shard.read(from: 0, count: shard.tokenCount, into: $0.baseAddress!) }
            for t in tokens.dropFirst() { counts[Int(t)] += 1 }
        }
        let ranked = (0..<264).sorted { (counts[$0], -$0) > (counts[$1], -$1) }
        let expected = ranked.prefix(40).sorted().map { Int64($0) }
        for run in [straight, resumed] {
            let ids = try CheckpointReader(url: checkpoint(run, step: Self.steps)).readInt64s("head_ids", in: .data)
            XCTAssertEqual(ids, expected, run.lastPathComponent)
        }
        XCTAssertEqual(try stepLosses(straight).mapValues(\.bitPattern), try stepLosses(resumed).mapValues(\.bitPattern),
                       "a resumed subset run continues exactly")
        let coverage = try readMetrics(straight).compactMap { $0["head_coverage"] as? Double }
        XCTAssertEqual(coverage.count, Self.steps)
        let covered = Double(expected.reduce(0) { $0 + counts[Int($1)] }) / Double(counts.reduce(0, +))
        for c in coverage {
            XCTAssertGreaterThan(c, 0.5)
            XCTAssertLessThan(c, 1)
            XCTAssertEqual(c, covered, accuracy: 0.1, "a batch's coverage is near the source's")
        }

        // inspect names the head; generate runs the subset draft.
        r = try CLI.run(["inspect", checkpoint(straight, step: Self.steps).path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("head: 40 of 264 ids scored"), r.stdout)
        XCTAssertTrue(r.stdout.contains("/data/head_ids"), r.stdout)
        r = try CLI.run(["generate", "--model", straight.path, "--prompt", "def ", "--max-new-tokens", "12",
                         "--temperature", "0.8", "--seed", "3", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first)
        let output = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["output_ids"] as? [Int])
        XCTAssertFalse(output.isEmpty)
        XCTAssertTrue(output.allSatisfy { expected.contains(Int64($0)) }, "a subset draft only emits its ids: \(output)")

        // speculate with the subset draft against a full-head target: greedy output is the target's own.
        let target = fixture.work.appendingPathComponent("target")
        r = try fixture.train(config: config, runDirectory: target, arguments: ["--max-steps", "\(Self.steps)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let prompts = fixture.work.appendingPathComponent("prompts.jsonl")
        try ["def ", "    ", "imp"].enumerated()
            .map { #"{"id": "p\#($0.offset)", "set": "code", "prompt": \#(String(decoding: try JSONEncoder().encode($0.element), as: UTF8.self))}"# }
            .joined(separator: "\n").write(to: prompts, atomically: true, encoding: .utf8)
        r = try CLI.run(["generate", "--model", target.path, "--prompts", prompts.path, "--max-new-tokens", "16",
                         "--temperature", "0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let plain = try r.stdout.split(separator: "\n").map {
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["output_ids"] as? [Int])
        }
        r = try CLI.run(["speculate", "--target", target.path, "--draft", straight.path, "--prompts", prompts.path,
                         "--max-new-tokens", "16", "--temperature", "0", "--gamma", "3", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let speculated = try XCTUnwrap(report["prompts"] as? [[String: Any]]).map { $0["output_ids"] as? [Int] ?? [] }
        XCTAssertEqual(speculated, plain, "speculative greedy output equals the target's")
        let outside = plain.joined().filter { !expected.contains(Int64($0)) }.count
        print("speculate with a 40-id draft: \(outside) of \(plain.joined().count) target tokens outside its subset")
    }

    /// On KD shards the ranking counts only the positions the loss trains on: a prompt id that outnumbers every
    /// response id is not in the head, and without the masks it would be.
    func testRankingOnKDShardsSkipsThePrompts() throws {
        let directory = try CLI.temporaryDirectory("headvocab-masks")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Two documents: prompt (id 7, five times) then response (ids 3, 4, 3, then EOS 2).
        let document: [Int32] = [7, 7, 7, 7, 7, 3, 4, 3, 2], mask: [UInt8] = [0, 0, 0, 0, 0, 1, 1, 1, 1]
        let url = directory.appendingPathComponent("train-000000.bin")
        try TokenShardWriter.write(document + document, documents: 2, vocabSize: 16, fingerprint: "test", to: url)
        try LossMaskShard.write(mask + mask, to: LossMaskShard.url(forShard: url))
        let shard = try TokenShard(url: url), masks = [try LossMaskShard(url: LossMaskShard.url(forShard: url))]

        XCTAssertEqual(HeadVocabulary.rank(shards: [shard], masks: masks, k: 2, vocab: 16), [2, 3],
                       "response targets: 3 x4, 2 x2, 4 x2 (the tie goes to the smaller id)")
        XCTAssertEqual(HeadVocabulary.rank(shards: [shard], k: 2, vocab: 16), [3, 7], "unmasked: 7 x9 (first token not a target)")
    }

    func testBadHeadVocabNamesTheKey() throws {
        let fixture = try RunFixture("headvocab-bad")
        defer { fixture.remove() }
        let config = try fixture.writeConfig()
        let run = fixture.work.appendingPathComponent("run")
        for (arguments, key) in [(["--set", "model.head_vocab=265", "--set", "model.head_vocab_source=code"], "model.head_vocab:"),
                                 (["--set", "model.head_vocab=0", "--set", "model.head_vocab_source=code"], "model.head_vocab:"),
                                 (["--set", "model.head_vocab=64", "--set", "model.head_vocab_source=web"], "model.head_vocab_source"),
                                 (["--set", "model.head_vocab=64"], "model.head_vocab_source"),
                                 (["--set", "model.head_vocab_source=code"], "model.head_vocab_source")] {
            let r = try fixture.train(config: config, runDirectory: run, arguments: arguments)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(key), "\(arguments) should name \(key): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: run.path), "nothing written")
        }
    }
}
