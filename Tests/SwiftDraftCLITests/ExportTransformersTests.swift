import DraftDevice
import DraftFormats
import DraftInference
import DraftModel
import DraftTokenizer
import Foundation
import XCTest

/// A Hugging Face export as `transformers` loads it, against the committed record of
/// `scripts/reference/make_export_fixtures.py` (CI has no torch): the test re-creates the script's deterministic
/// checkpoint (a SplitMix64 seed model through `train --init-from`, lr 1e-30 so the weights keep their bits), exports
/// it, and checks that the export is byte for byte what transformers loaded, that SwiftDraft's logits on it are
/// transformers', and that transformers' assisted greedy output with this draft is SmolLM2's own greedy output.
final class ExportTransformersTests: XCTestCase {
    struct Record {
        let json: [String: Any]
        let model: [String: Any]
        var int: (String) -> Int { { (self.model[$0] as? NSNumber)?.intValue ?? 0 } }
    }

    static let fixtures: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)?.appendingPathComponent("export")
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/export")
    static let smollm2 = ExportTests.cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    static let tokenizer = ExportTests.cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json")
    static var work: URL!
    static var export: URL!
    static var record: Record!
    static var seedValuesSHA = ""

    override class func setUp() {
        super.setUp()
        do {
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("transformers.json"))) as? [String: Any])
            record = Record(json: json, model: try XCTUnwrap(json["model"] as? [String: Any]))
            work = try CLI.temporaryDirectory("export-transformers")
            let seed = work.appendingPathComponent("seed")
            seedValuesSHA = try writeSeed(seed)
            let data = work.appendingPathComponent("data")
            let t = try CLI.run(["tokenize", "--tokenizer", tokenizer.path, "--input", "/usr/lib/python3.11/json", "--output", data.path])
            guard t.status == 0 else { return XCTFail(t.stderr) }
            let m = record.model
            let model = ["vocab_size", "dim", "layers", "heads", "kv_heads", "ffn_dim", "max_seq_len", "rope_theta", "norm_eps"]
                .map { "\($0): \(m[$0]!)" }.joined(separator: ", ")
            let config = work.appendingPathComponent("config.yaml")
            // The script's config, word for word where it matters: one step of lr 1e-30.
            try """
                run: {name: seed, seed: 1}
                model: {\(model)}
                tokenizer: \(tokenizer.path)
                data: {seq_len: 32, sources: {code: {path: \(data.path)}}}
                schedule: {global_batch_tokens: 128, micro_batch: 4, stages: [{name: pretrain, tokens: 128, mixture: {code: 1.0}}]}
                optimizer: {lr: 1.0e-30, min_lr: 0.0}
                distributed: {world_size: 1}
                log: {every_steps: 1, eval_every_steps: 0, tensorboard: false}
                """.write(to: config, atomically: true, encoding: .utf8)
            let run = work.appendingPathComponent("run")
            let r = try CLI.run(["train", "--config", config.path, "--run-dir", run.path, "--init-from", seed.path,
                                 "--max-steps", "1", "--quiet"])
            guard r.status == 0 else { return XCTFail(r.stderr) }
            export = work.appendingPathComponent("export")
            let e = try CLI.run(["export", "--checkpoint", run.path, "--format", "hf", "--dtype", "f32", "--output", export.path])
            guard e.status == 0 else { return XCTFail(e.stderr) }
        } catch {
            XCTFail("\(error)")
        }
    }

    override class func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
        super.tearDown()
    }

    /// The script's seed model (`seed_tensors`): one SplitMix64 stream of uniforms over the flat buffer, matrices in
    /// +-2/sqrt(columns) (embedding +-1), norm gains in 1 +- 0.5. Returns the SHA-256 of its float32 values.
    static func writeSeed(_ directory: URL) throws -> String {
        let r = record!
        let config = ModelConfig(vocabSize: r.int("vocab_size"), dim: r.int("dim"), layers: r.int("layers"),
                                 heads: r.int("heads"), kvHeads: r.int("kv_heads"), ffnDim: r.int("ffn_dim"),
                                 maxSeqLen: r.int("max_seq_len"))
        let layout = ParameterLayout(config)
        var rng = SplitMix64(seed: UInt64(try XCTUnwrap(r.json["seed"] as? Int)))
        var values = [Float](repeating: 0, count: layout.count)
        for slot in layout.slots {
            let scale = slot.shape.count == 1 ? 0.5 : slot.name == "model.embed_tokens.weight" ? 1.0 : 2.0 / Double(slot.shape[1]).squareRoot()
            for i in slot.offset..<(slot.offset + slot.count) {
                let centered = (2.0 * rng.nextUnitInterval() - 1.0) * scale
                values[i] = Float(slot.shape.count == 1 ? 1.0 + centered : centered)
            }
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let hf: [String: Any] = ["architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                 "num_attention_heads": config.heads, "num_key_value_heads": config.kvHeads]
        try JSONSerialization.data(withJSONObject: hf).write(to: directory.appendingPathComponent("config.json"))
        try values.withUnsafeBufferPointer { flat in
            let entries = layout.slots.map { slot in
                (name: slot.name, shape: slot.shape, values: UnsafeBufferPointer(rebasing: flat[slot.offset..<(slot.offset + slot.count)]))
            }
            try SafeTensorsFile.write(entries, metadata: [:], dtype: .f32, to: directory.appendingPathComponent("model.safetensors"))
        }
        // tokenizer_config.json too: its EOS is part of the tokenizer's identity (fingerprint).
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: tokenizer.deletingLastPathComponent().appendingPathComponent(name),
                                             to: directory.appendingPathComponent(name))
        }
        var sha = SHA256()
        values.withUnsafeBytes { sha.update($0) }
        return SHA256.hexString(sha.finalize())
    }

    func testExportIsWhatTransformersLoaded() throws {
        let record = try XCTUnwrap(Self.record)
        XCTAssertEqual(Self.seedValuesSHA, record.json["seed_values_sha256"] as? String,
                       "the Swift seed generator no longer makes the script's values")
        let export = try XCTUnwrap(Self.export)
        let weights = try Data(contentsOf: export.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(weights.withUnsafeBytes { SHA256.hex($0) }, record.json["export_safetensors_sha256"] as? String)
        let ours = try JSONSerialization.jsonObject(with: Data(contentsOf: export.appendingPathComponent("config.json"))) as? NSDictionary
        let theirs = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(record.json["export_config_json"] as? String).utf8)) as? NSDictionary
        XCTAssertEqual(ours, theirs, "config.json differs from the one transformers loaded")
    }

    func testLogitsEqualTransformers() throws {
        let record = try XCTUnwrap(Self.record)
        let sequences = try XCTUnwrap(record.json["ids"] as? [[Int]]).map { $0.map(Int32.init) }
        let stride = try XCTUnwrap(record.json["column_stride"] as? Int)
        let lse = try XCTUnwrap(record.json["logsumexp"] as? [[Double]])
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent(try XCTUnwrap(record.json["logits"] as? String)))
        let reference: [Float] = data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        let device = CPUDevice()
        let model = try loadModel(try XCTUnwrap(Self.export).path, device: device)
        let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let columns = Array(Swift.stride(from: 0, to: model.config.vocabSize, by: stride))
        XCTAssertEqual(reference.count, sequences.reduce(0) { $0 + $1.count } * columns.count)
        var worstLogit = 0.0, worstLSE = 0.0, spread = 0.0, k = 0
        for (s, sequence) in sequences.enumerated() {
            let cache = try KVCache(device: device, layers: model.config.layers, slotCount: 1, capacity: sequence.count,
                                    kvHeads: model.config.kvHeads, headDim: model.config.headDim)
            let logits = try engine.forward([SequenceChunk(slot: 0, tokens: sequence, start: 0)], cache: cache, select: .allRows)
            for p in 0..<logits.rowCount {
                let row = logits.row(p)
                for c in columns {
                    worstLogit = max(worstLogit, abs(Double(row[c]) - Double(reference[k])))
                    spread = max(spread, abs(Double(reference[k])))
                    k += 1
                }
                let top = Double(row.max()!)
                let ours = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
                worstLSE = max(worstLSE, abs(ours - lse[s][p]))
            }
        }
        print("logits vs transformers: max |difference| \(worstLogit) over \(k) values (largest |logit| \(spread)), logsumexp \(worstLSE)")
        XCTAssertGreaterThan(spread, 1, "the seed model's logits are too small for the check to mean anything")
        XCTAssertLessThan(worstLogit, 1e-4, "max |logit - transformers'| over \(k) values")
        XCTAssertLessThan(worstLSE, 1e-4, "max |logsumexp - transformers'| over every position")
    }

    /// Assisted greedy decoding is lossless, so transformers' output with this draft as `assistant_model` must be the
    /// target's own greedy output, which `swiftdraft generate` gives (its agreement with transformers' plain greedy
    /// SmolLM2 is DraftInferenceTests' SmolLM2RealTargetTests).
    func testAssistedGreedyIsTargetGreedy() throws {
        let assist = try XCTUnwrap(Self.record?.json["assist"] as? [String: Any])
        guard FileManager.default.fileExists(atPath: Self.smollm2.path) else { throw XCTSkip("SmolLM2 GGUF not in the asset cache") }
        let count = try XCTUnwrap(assist["max_new_tokens"] as? Int)
        let r = try CLI.run(["generate", "--model", Self.smollm2.path, "--prompt", try XCTUnwrap(assist["prompt"] as? String),
                             "--max-new-tokens", "\(count)", "--temperature", "0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first)
        let output = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(output["prompt_tokens"] as? Int, (assist["prompt_ids"] as? [Int])?.count)
        XCTAssertGreaterThan(assist["draft_forward_calls"] as? Int ?? 0, 0, "the record shows no draft forward pass")
        let assisted = try XCTUnwrap(assist["assisted_greedy_ids"] as? [Int])
        XCTAssertEqual(assisted.count, count)
        XCTAssertEqual(output["output_ids"] as? [Int], assisted)
    }
}
