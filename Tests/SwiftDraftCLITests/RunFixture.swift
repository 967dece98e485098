import DraftCheckpoint
import Foundation
import XCTest

/// A small byte-level corpus, a tiny config and helpers to run `swiftdraft train` alone or under `mpirun`.
struct RunFixture {
    let work: URL
    let data: URL
    let repository: URL

    /// Tokenizes a slice of CPython's standard library (the `json` and `email` packages, ~600 KB) once per fixture.
    init(_ name: String) throws {
        work = try CLI.temporaryDirectory(name)
        data = work.appendingPathComponent("data")
        repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let inputs = ["/usr/lib/python3.11/json", "/usr/lib/python3.11/email"]
        guard inputs.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else { throw XCTSkip("CPython sources not present") }
        let r = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input"] + inputs + ["--output", data.path, "--val-fraction", "0.05"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func remove() { try? FileManager.default.removeItem(at: work) }

    /// A config planned for 8 ranks: 16 sequences of 32 tokens per step, micro-batch 2.
    func writeConfig(_ name: String = "config", overlap: Bool = true, everySteps: Int = 10, extra: String = "") throws -> URL {
        let url = work.appendingPathComponent("\(name).yaml")
        try """
            run: {name: \(name), seed: 11}
            model: {vocab_size: 264, dim: 32, layers: 2, heads: 4, kv_heads: 2, ffn_dim: 64, max_seq_len: 32}
            tokenizer: bytes
            data: {seq_len: 32, sources: {code: {path: \(data.path)}}}
            schedule: {global_batch_tokens: 512, micro_batch: 2, stages: [{name: pretrain, tokens: 40960, mixture: {code: 1.0}}]}
            optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
            lr_schedule: {kind: cosine, warmup_tokens: 2048}
            distributed: {world_size: 8, bucket_mb: 0.01, overlap: \(overlap)}
            checkpoint: {every_steps: \(everySteps), keep_last: 5}
            log: {every_steps: 1, eval_every_steps: 0}
            \(extra)
            """.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// `swiftdraft train` in one process (ranks == 1) or through launch/train.sh under mpirun.
    @discardableResult
    func train(config: URL, runDirectory: URL, ranks: Int = 1, arguments: [String] = [],
               environment: [String: String] = [:]) throws -> CLI.Result {
        let common = ["--config", config.path, "--run-dir", runDirectory.path, "--quiet"] + arguments
        if ranks == 1 { return try CLI.run(["train"] + common, environment: environment) }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun not installed") }
        return try CLI.run(["-n", "\(ranks)"] + common, in: repository,
                           environment: environment.merging(["SWIFTDRAFT_BIN": try CLI.binary.path]) { $1 },
                           executable: repository.appendingPathComponent("launch/train.sh"))
    }
}

/// Per-step losses of a run, from metrics.jsonl (the last value logged for each step wins, as after a resume).
func stepLosses(_ runDirectory: URL) throws -> [Int: Double] {
    var losses: [Int: Double] = [:]
    for line in try readMetrics(runDirectory) where line["event"] == nil {
        if let step = line["step"] as? Int, let loss = line["loss"] as? Double { losses[step] = loss }
    }
    return losses
}

/// Every float32 dataset of a checkpoint, by "group/name".
func checkpointTensors(_ url: URL) throws -> [String: [Float]] {
    let reader = try CheckpointReader(url: url)
    var result: [String: [Float]] = [:]
    for info in reader.tensors {
        var values = [Float](repeating: 0, count: info.count)
        try values.withUnsafeMutableBufferPointer { try reader.read(info, into: $0) }
        result["\(info.group.rawValue)/\(info.name)"] = values
    }
    return result
}

func checkpoint(_ runDirectory: URL, step: Int) -> URL {
    runDirectory.appendingPathComponent("checkpoints").appendingPathComponent(String(format: "step-%08d.h5", step))
}

/// max |a - b| / max |b| over one tensor.
func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    var difference: Float = 0, scale: Float = 0
    for i in a.indices {
        difference = max(difference, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    return Double(difference / max(scale, 1e-30))
}
