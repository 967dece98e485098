import DraftCheckpoint
import DraftFormats
import Foundation
import XCTest

/// `export` of a draft with an untied subset head (`model.head_vocab`): the Hugging Face file holds a full-vocabulary
/// `lm_head.weight` whose subset rows are the checkpoint's and whose other rows are zero (logit 0 in other runtimes,
/// see README "Draft head over a vocabulary subset"); every other tensor is the checkpoint's bit for bit.
final class SubsetHeadExportTests: XCTestCase {
    func testUntiedSubsetHeadExportsZeroRowsOutsideTheSubset() throws {
        let cache = URL(fileURLWithPath: ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"]
                        ?? (NSHomeDirectory() + "/.cache/swiftdraft"))
        let tokenizer = cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json").path
        guard FileManager.default.fileExists(atPath: tokenizer) else { throw XCTSkip("SmolLM2 tokenizer not in the cache") }
        let work = try CLI.temporaryDirectory("subset-export")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("data"), run = work.appendingPathComponent("run")
        var r = try CLI.run(["tokenize", "--tokenizer", tokenizer, "--input", "/usr/lib/python3.11/json",
                             "--output", data.path, "--val-fraction", "0.05"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = work.appendingPathComponent("config.yaml")
        try """
            run: {name: subset-export, seed: 5}
            model: {vocab_size: 49152, dim: 32, layers: 1, heads: 4, kv_heads: 2, ffn_dim: 64, max_seq_len: 64,
                    tie_embeddings: false, head_vocab: 512, head_vocab_source: code}
            tokenizer: \(tokenizer)
            data: {seq_len: 32, sources: {code: {path: \(data.path)}}}
            schedule: {global_batch_tokens: 256, micro_batch: 4, stages: [{name: pretrain, tokens: 512, mixture: {code: 1.0}}]}
            distributed: {world_size: 1}
            log: {every_steps: 1, eval_every_steps: 0, tensorboard: false}
            """.write(to: config, atomically: true, encoding: .utf8)
        r = try CLI.run(["train", "--config", config.path, "--run-dir", run.path, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)

        let out = work.appendingPathComponent("hf")
        r = try CLI.run(["export", "--checkpoint", run.path, "--format", "hf", "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let reader = try CheckpointReader(url: try resolveCheckpointFile(run.path))
        let ids = Set(try reader.readInt64s("head_ids", in: .data).map(Int.init))
        XCTAssertEqual(ids.count, 512)
        let weights = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        for info in reader.tensors where info.group == .model {
            var stored = [Float](repeating: 0, count: info.count)
            try stored.withUnsafeMutableBufferPointer { try reader.read(info, into: $0) }
            let exported = try weights.tensor(info.name)
            guard info.name == "lm_head.weight" else {
                XCTAssertEqual(exported, stored, info.name)
                continue
            }
            XCTAssertEqual(info.shape, [49152, 32], "the checkpoint keeps the full head")
            var zeroRows = 0
            for v in 0..<49152 {
                let rows = (v * 32)..<((v + 1) * 32)
                if ids.contains(v) {
                    XCTAssertEqual(Array(exported[rows]), Array(stored[rows]), "subset row \(v)")
                } else {
                    XCTAssertTrue(exported[rows].allSatisfy { $0 == 0 }, "row \(v) outside the subset")
                    XCTAssertTrue(stored[rows].contains { $0 != 0 }, "the checkpoint's row \(v) is not zero already")
                    zeroRows += 1
                }
            }
            XCTAssertEqual(zeroRows, 49152 - 512)
        }
    }
}
