// Not a timed test: prints checkpoint write and load figures for the DESIGN.md 50M config's state
// (vocab 32064, dim 512, 8 layers, ffn 1408, tied embeddings: 42.1M parameters, x3 with the AdamW moments).
// Run with SWIFTDRAFT_CHECKPOINT_BENCH=1 (optionally SWIFTDRAFT_CHECKPOINT_BENCH_DIR=<dir on the target disk>).
import DraftCheckpoint
import DraftDevice
import DraftModel
import Foundation
import XCTest

final class CheckpointBenchmark: XCTestCase {
    private static func llamaShapes(vocab: Int, dim: Int, layers: Int, ffn: Int) -> [(String, [Int])] {
        var shapes: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, dim])]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            shapes += [(p + "input_layernorm.weight", [dim]),
                       (p + "self_attn.q_proj.weight", [dim, dim]), (p + "self_attn.k_proj.weight", [dim, dim]),
                       (p + "self_attn.v_proj.weight", [dim, dim]), (p + "self_attn.o_proj.weight", [dim, dim]),
                       (p + "post_attention_layernorm.weight", [dim]),
                       (p + "mlp.gate_proj.weight", [ffn, dim]), (p + "mlp.up_proj.weight", [ffn, dim]),
                       (p + "mlp.down_proj.weight", [dim, ffn])]
        }
        return shapes + [("model.norm.weight", [dim])]
    }

    func testBenchmarkWriteAndLoad() throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["SWIFTDRAFT_CHECKPOINT_BENCH"] == "1" else {
            throw XCTSkip("set SWIFTDRAFT_CHECKPOINT_BENCH=1 to run the checkpoint benchmark")
        }
        let base = environment["SWIFTDRAFT_CHECKPOINT_BENCH_DIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        let dir = base.appendingPathComponent("swiftdraft-ckpt-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }

        // One flat allocation carved into views, as the trainer holds parameters and moments.
        let shapes = Self.llamaShapes(vocab: 32064, dim: 512, layers: 8, ffn: 1408)
        let counts = shapes.map { $0.1.reduce(1, *) }
        let parameters = counts.reduce(0, +)
        let flat = UnsafeMutableBufferPointer<Float>.allocate(capacity: parameters * 3)
        defer { flat.deallocate() }
        var generator = SplitMix(state: 7)
        for i in 0..<flat.count { flat[i] = Float(Int32(truncatingIfNeeded: generator.next())) * 1e-10 }
        func views(_ region: Int) -> [UnsafeMutableBufferPointer<Float>] {
            var offset = region * parameters
            return counts.map { count in
                defer { offset += count }
                return UnsafeMutableBufferPointer(rebasing: flat[offset..<(offset + count)])
            }
        }
        let (model, m, v) = (views(0), views(1), views(2))

        let store = CheckpointStore(directory: dir, keepLast: 2)
        var lines = ["checkpoint benchmark: \(shapes.count) tensors, \(parameters) parameters, "
                     + "\(String(format: "%.1f", Double(parameters * 12) / 1e6)) MB of fp32 state, dir \(base.path)"]
        for step in [500, 1000, 1500] {
            let saved = try store.save(step: step, expectedTensorCount: shapes.count * 3) { writer in
                try writer.setAttributes(["step": .int(Int64(step)), "tokens_seen": .int(Int64(step) << 20)])
                for (index, (name, shape)) in shapes.enumerated() {
                    try writer.write(TensorSource(name: name, shape: shape, values: UnsafeBufferPointer(model[index])), to: .model)
                }
                for (index, (name, shape)) in shapes.enumerated() {
                    try writer.write(TensorSource(name: name + ".exp_avg", shape: shape, values: UnsafeBufferPointer(m[index])), to: .optimizer)
                    try writer.write(TensorSource(name: name + ".exp_avg_sq", shape: shape, values: UnsafeBufferPointer(v[index])), to: .optimizer)
                }
                try writer.writeInt64s("cursor", [Int64(step) * 512], to: .data)
            }
            lines.append(String(format: "save step %d: %.1f MB in %.3f s (write+close %.3f s, fsync+rename+latest %.3f s) = %.0f MB/s",
                                step, Double(saved.fileBytes) / 1e6, saved.seconds, saved.writeSeconds,
                                saved.syncSeconds, saved.megabytesPerSecond))

            // Load as resume does: open, then every tensor straight into the trainer's buffers, checksums verified.
            let start = monotonic()
            let reader = try CheckpointReader.open(saved.url)
            for (index, (name, _)) in shapes.enumerated() {
                try reader.read(name, in: .model, into: model[index])
                try reader.read(name + ".exp_avg", in: .optimizer, into: m[index])
                try reader.read(name + ".exp_avg_sq", in: .optimizer, into: v[index])
            }
            let loadSeconds = monotonic() - start
            lines.append(String(format: "load step %d (page cache warm): %.3f s = %.0f MB/s, checksums verified",
                                step, loadSeconds, Double(saved.fileBytes) / 1e6 / loadSeconds))
        }
        let hashStart = monotonic()
        let digest = CheckpointChecksum.xxh64(UnsafeBufferPointer(flat))
        let hashSeconds = monotonic() - hashStart
        lines.append(String(format: "xxh64 alone over the %.1f MB: %.3f s = %.0f MB/s (%016llx)",
                            Double(flat.count * 4) / 1e6, hashSeconds, Double(flat.count * 4) / 1e6 / hashSeconds, digest))
        let resumeStart = monotonic()
        let newest = try store.newestValid()
        lines.append(String(format: "newestValid (open + verify all of %@): %.3f s",
                            newest.url?.lastPathComponent ?? "none", monotonic() - resumeStart))
        print(lines.joined(separator: "\n"))
        XCTAssertEqual(try store.checkpoints().map(\.step), [1000, 1500])
    }

    /// The codec on the same 50M model: a full training state saved and decoded as resume does it, and the model
    /// alone loaded in one call as inference does it (host buffers plus the copy onto a CPU device).
    func testBenchmarkCodecAndOneCallLoad() throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["SWIFTDRAFT_CHECKPOINT_BENCH"] == "1" else {
            throw XCTSkip("set SWIFTDRAFT_CHECKPOINT_BENCH=1 to run the checkpoint benchmark")
        }
        let base = environment["SWIFTDRAFT_CHECKPOINT_BENCH_DIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        let dir = base.appendingPathComponent("swiftdraft-codec-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = ModelConfig(vocabSize: 32064, dim: 512, layers: 8, heads: 8, kvHeads: 8, ffnDim: 1408,
                                 maxSeqLen: 2048)
        let count = ParameterLayout(config).count
        var generator = SplitMix(state: 11)
        func buffer() -> [Float] { (0..<count).map { _ in Float(Int32(truncatingIfNeeded: generator.next())) * 1e-10 } }
        let state = TrainingState(
            modelConfig: config, parameters: buffer(),
            optimizer: OptimizerState(expAvg: buffer(), expAvgSq: buffer(), step: 500, beta1: 0.9, beta2: 0.95),
            cursor: [0, 1, 2, 3], sourceNames: ["code", "text"], seed: 1, step: 500, tokensSeen: 500 << 20,
            stageName: "pretrain", stageIndex: 0, worldSize: 8, configYAML: "run: {name: bench}\n", tokenizer: "bytes",
            tokenizerFingerprint: String(repeating: "0", count: 64), consecutiveBadSteps: 0)
        let store = CheckpointStore(directory: dir, keepLast: 1)
        let saved = try store.save(step: 500, expectedTensorCount: CheckpointCodec.tensorCount(of: state)) {
            try CheckpointCodec.encode(state, into: &$0)
        }
        var lines = [String(format: "codec save (encode + write + fsync): %d parameters, %.1f MB in %.3f s = %.0f MB/s",
                            count, Double(saved.fileBytes) / 1e6, saved.seconds, saved.megabytesPerSecond)]
        var start = monotonic()
        let decoded = try CheckpointCodec.decode(CheckpointReader(url: saved.url), expecting: ParameterLayout(config))
        var seconds = monotonic() - start
        lines.append(String(format: "codec decode, full state (page cache warm): %.3f s = %.0f MB/s",
                            seconds, Double(saved.fileBytes) / 1e6 / seconds))
        XCTAssertEqual(decoded.parameters.count, count)
        start = monotonic()
        let loaded = try loadModelCheckpoint(path: dir.path, device: CPUDevice())
        seconds = monotonic() - start
        lines.append(String(format: "loadModelCheckpoint, /model only (%.1f MB, onto the CPU device): %.3f s = %.0f MB/s",
                            Double(count * 4) / 1e6, seconds, Double(count * 4) / 1e6 / seconds))
        XCTAssertEqual(loaded.step, 500)
        print(lines.joined(separator: "\n"))
    }

    private func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
