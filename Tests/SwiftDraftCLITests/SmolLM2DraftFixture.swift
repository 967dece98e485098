import Foundation
import XCTest

/// A tiny draft on SmolLM2's tokenizer (its `tokenizer.json` and `tokenizer_config.json` from the asset cache, whose
/// content fingerprint equals the SmolLM2 GGUF's), trained briefly on CPython's `json` package: enough for a draft
/// that agrees with the target now and then, in a few seconds.
enum SmolLM2DraftFixture {
    static let cache = URL(fileURLWithPath: ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"]
                           ?? (NSHomeDirectory() + "/.cache/swiftdraft"))
    static var targetGGUF: URL { cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") }
    static var tokenizer: URL { cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json") }

    /// Trains `steps` steps of 256 tokens into `work/run` and returns the run directory.
    static func train(in work: URL, steps: Int, seed: Int = 5, checkpointEvery: Int = 4) throws -> URL {
        let run = work.appendingPathComponent("run")
        let data = work.appendingPathComponent("data")
        let t = try CLI.run(["tokenize", "--tokenizer", tokenizer.path, "--input", "/usr/lib/python3.11/json",
                             "--output", data.path, "--val-fraction", "0.05"])
        guard t.status == 0 else { throw Failure(description: "tokenize: \(t.stderr)") }
        let config = work.appendingPathComponent("config.yaml")
        try """
            run: {name: smollm2-draft, seed: \(seed)}
            model: {vocab_size: 49152, dim: 64, layers: 2, heads: 4, kv_heads: 2, ffn_dim: 128, max_seq_len: 64}
            tokenizer: \(tokenizer.path)
            data: {seq_len: 32, sources: {code: {path: \(data.path)}}}
            schedule: {global_batch_tokens: 256, micro_batch: 4, stages: [{name: pretrain, tokens: \(256 * steps), mixture: {code: 1.0}}]}
            optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
            distributed: {world_size: 1}
            checkpoint: {every_steps: \(checkpointEvery), keep_last: 2}
            log: {every_steps: 1, eval_every_steps: 0, tensorboard: false}
            """.write(to: config, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", config.path, "--run-dir", run.path, "--quiet"])
        guard r.status == 0 else { throw Failure(description: "train: \(r.stderr)") }
        return run
    }

    struct Failure: Error, CustomStringConvertible { let description: String }
}
