import DraftData
import Foundation
import XCTest

/// The trainer learns real code: byte-level shards of CPython's standard library, one process, about a minute.
final class LearningTests: XCTestCase {
    func testValidationLossFallsWellBelowUnigramEntropy() throws {
        let corpus = "/usr/lib/python3.11"
        guard FileManager.default.fileExists(atPath: corpus) else { throw XCTSkip("\(corpus) not present") }
        let work = try CLI.temporaryDirectory("learn")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("cpython")
        let tokenize = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input", corpus, "--output", data.path,
                                    "--val-fraction", "0.02"])
        XCTAssertEqual(tokenize.status, 0, tokenize.stderr)

        // The bound comes from the data: the entropy of the training bytes' unigram distribution, in nats.
        let manifest = try XCTUnwrap(ShardManifest.loadIfPresent(directory: data.path))
        var counts = [Int](repeating: 0, count: 257)
        for file in manifest.train.files {
            let shard = try TokenShard(url: data.appendingPathComponent(file))
            var ids = [Int32](repeating: 0, count: shard.tokenCount)
            ids.withUnsafeMutableBufferPointer { shard.read(from: 0, count: shard.tokenCount, into: $0.baseAddress!) }
            for id in ids { counts[Int(id)] += 1 }
        }
        let total = Double(counts.reduce(0, +))
        let entropy = counts.filter { $0 > 0 }.map { -Double($0) / total * log(Double($0) / total) }.reduce(0, +)

        let config = work.appendingPathComponent("learn.yaml")
        try """
            run: {name: learn, seed: 7}
            model: {vocab_size: 264, dim: 128, layers: 4, heads: 4, kv_heads: 2, ffn_dim: 352, max_seq_len: 128}
            tokenizer: bytes
            data: {seq_len: 128, sources: {code: {path: \(data.path)}}}
            schedule:
              global_batch_tokens: 2048
              micro_batch: 8
              stages: [{name: pretrain, tokens: 3.0e5, mixture: {code: 1.0}}]
            optimizer: {lr: 2.0e-3, min_lr: 2.0e-4}
            lr_schedule: {kind: cosine, warmup_tokens: 2.0e4}
            checkpoint: {every_steps: 1000, keep_last: 1}
            log: {every_steps: 25, eval_every_steps: 1000, eval_sequences: 32}
            """.write(to: config, atomically: true, encoding: .utf8)
        let run = work.appendingPathComponent("run")
        let train = try CLI.run(["train", "--config", config.path, "--run-dir", run.path])
        XCTAssertEqual(train.status, 0, train.stderr)
        let evaluations = try readMetrics(run).filter { $0["event"] as? String == "eval" }
        let last = try XCTUnwrap(evaluations.last?["val_loss"] as? [String: Double])
        let validation = try XCTUnwrap(last["code"])
        print("unigram entropy \(entropy) nats; validation loss \(validation) (ratio \(validation / entropy))")
        XCTAssertGreaterThan(entropy, 2.5, "CPython bytes should carry real information")
        XCTAssertLessThan(validation, 0.8 * entropy, "validation loss \(validation) vs unigram entropy \(entropy)")
    }
}
