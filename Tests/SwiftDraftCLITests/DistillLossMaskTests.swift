import DraftData
import DraftDistill
import Foundation
import XCTest

/// Training on distill shards takes loss on response tokens only.
///
/// Every prompt is 24 fresh random byte ids (128-255) that no model can predict (ln 128 = 4.85 nats each); every
/// response is "ABCDEFGH" then EOS, which a tiny model learns in a few steps. With the mask, only the 9 response
/// targets count, so the loss falls well below 1.5. The same shards read as raw text (no mask sidecar) put 23 of every
/// 33 targets on random ids, so their loss cannot fall below 23/33 * 4.85 = 3.4: the test fails if the loader
/// ignores the mask. A third run mixes the distill source with raw text in one stage.
final class DistillLossMaskTests: XCTestCase {
    func testPromptRegionsAreInvisibleToTheLoss() throws {
        let work = try CLI.temporaryDirectory("distill-mask")
        defer { try? FileManager.default.removeItem(at: work) }
        var rng = SystemRandomNumberGenerator()
        let response = Array("ABCDEFGH".utf8).map(Int32.init)
        let records = (0..<400).map { i in
            ResponseRecord(promptID: "p\(i)", set: nil, temperature: 0, prompt: "",
                           promptIDs: (0..<24).map { _ in Int32.random(in: 128...255, using: &rng) },
                           response: "ABCDEFGH", responseIDs: response, finishReason: "eos", seed: 0)
        }
        let kd = work.appendingPathComponent("kd"), raw = work.appendingPathComponent("raw")
        for directory in [kd, raw] { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        let written = try DistillShards.write(train: records, validation: [], to: kd, eos: 256, vocabSize: 257,
                                              fingerprint: "swiftdraft-bytes-v1", topK: nil)
        let split: [String: Any] = ["files": written.train.files, "tokens": written.train.tokens, "documents": written.train.documents]
        let manifest: [String: Any] = ["format": DistillShardManifest.format, "complete": true, "train": split,
                                       "validation": ["files": [String](), "tokens": 0, "documents": 0]]
        try JSONSerialization.data(withJSONObject: manifest).write(to: kd.appendingPathComponent("manifest.json"))
        // The same tokens without the sidecar: a directory of .bin shards is raw text.
        try FileManager.default.copyItem(at: kd.appendingPathComponent(written.train.files[0]),
                                         to: raw.appendingPathComponent(written.train.files[0]))

        func finalLoss(_ name: String, sources: String, mixture: String) throws -> Double {
            let config = work.appendingPathComponent("\(name).yaml")
            try """
                run: {name: \(name), seed: 3}
                model: {vocab_size: 264, dim: 32, layers: 2, heads: 4, kv_heads: 2, ffn_dim: 64, max_seq_len: 32}
                tokenizer: bytes
                data: {seq_len: 32, sources: {\(sources)}}
                schedule: {global_batch_tokens: 512, micro_batch: 4, stages: [{name: align, tokens: 51200, mixture: {\(mixture)}}]}
                optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
                lr_schedule: {kind: cosine, warmup_tokens: 2048}
                checkpoint: {every_steps: 1000, keep_last: 1}
                log: {every_steps: 1, eval_every_steps: 0}
                """.write(to: config, atomically: true, encoding: .utf8)
            let run = work.appendingPathComponent("run-\(name)")
            let r = try CLI.run(["train", "--config", config.path, "--run-dir", run.path, "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let losses = try stepLosses(run)
            let last = try XCTUnwrap(losses.keys.max())
            // The mean of the last 10 steps, so one noisy step decides nothing.
            let tail = (max(1, last - 9)...last).compactMap { losses[$0] }
            return tail.reduce(0, +) / Double(tail.count)
        }
        let masked = try finalLoss("masked", sources: "kd: {path: \(kd.path)}", mixture: "kd: 1.0")
        let unmasked = try finalLoss("unmasked", sources: "raw: {path: \(raw.path)}", mixture: "raw: 1.0")
        let mixed = try finalLoss("mixed", sources: "kd: {path: \(kd.path)}, raw: {path: \(raw.path)}", mixture: "kd: 0.5, raw: 0.5")
        print("final loss: masked \(masked), unmasked \(unmasked), mixed \(mixed) (floor without the mask: \(23.0 / 33 * log(128.0)))")
        XCTAssertLessThan(masked, 1.5, "loss on response tokens only")
        XCTAssertGreaterThan(unmasked, 3.0, "the control: random prompt ids as targets keep the loss high")
        XCTAssertTrue(mixed.isFinite)
    }
}
