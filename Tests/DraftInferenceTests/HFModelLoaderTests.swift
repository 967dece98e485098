import DraftDevice
import DraftFormats
import DraftInference
import Foundation
import XCTest

/// Hugging Face directories of every architecture (llama GQA in BF16 shards, llama with `llama3` rope scaling in
/// F16 with tied embeddings, phi3's fused projections in F16, qwen2's biases in BF16), against transformers' fp32
/// logits of the same directories (committed by `scripts/reference/inference_fixtures.py`).
final class HFModelLoaderTests: XCTestCase {
    func testEveryArchitectureMatchesTransformers() throws {
        let manifest = try LoaderFixtures.manifest()
        let device = CPUDevice(threads: 2)
        XCTAssertEqual(Set(manifest.models.map(\.name)), ["llama-gqa", "llama3-rope", "phi3", "qwen2"])
        for m in manifest.models {
            let model = try loadHFModel(directory: m.hfDirectory.path, device: device)
            XCTAssertEqual(model.config.architecture, m.architecture)
            let diff = maxAbsDifference(try allLogits(model, device: device, sequences: manifest.sequences), m.logits)
            print("HF \(m.name): max |logit - transformers| = \(String(format: "%.2e", diff))")
            XCTAssertLessThanOrEqual(diff, 1e-4, m.name)
        }
    }

    func testConfigTokenizerAndTemplate() throws {
        let device = CPUDevice(threads: 1)
        let tied = try loadHFModel(directory: LoaderFixtures.url("tiny/llama3-rope").path, device: device)
        // llama3 scaling divides the long wavelengths by `factor` 8 and leaves the short ones alone.
        let plain = DecoderConfig.ropeInverseFrequencies(theta: 10_000, headDim: 64)
        XCTAssertEqual(tied.config.ropeInverseFrequencies[0], plain[0])
        XCTAssertEqual(tied.config.ropeInverseFrequencies[31], plain[31] / 8, accuracy: plain[31] * 1e-6)
        guard case .dense(let e, _, _) = tied.weights.embedding, case .dense(let h, _, _) = tied.weights.head else {
            return XCTFail("HF weights are dense")
        }
        XCTAssertEqual(e, h, "tied embeddings share one buffer")
        XCTAssertTrue(tied.chatTemplate?.contains("<|im_start|>") ?? false)
        XCTAssertTrue(tied.config.eosTokenIDs.contains(2))
        XCTAssertEqual(tied.tokenizer.vocabSize, 512)

        let sharded = try loadHFModel(directory: LoaderFixtures.url("tiny/llama-gqa").path, device: device)
        XCTAssertEqual(sharded.config.kvHeads, 2)
        XCTAssertEqual(sharded.config.layers, 2)
        XCTAssertEqual(sharded.parameterCount, 1_049_856)  // the count transformers printed when making it
    }

    func testBadDirectoriesNameTheFile() throws {
        let device = CPUDevice(threads: 1)
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hf-bad-\(UUID())")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: LoaderFixtures.url("tiny/qwen2"), to: tmp)
        let configURL = tmp.appendingPathComponent("config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])

        config["intermediate_size"] = 512
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try loadHFModel(directory: tmp.path, device: device)) { error in
            XCTAssertTrue(error is FormatError)
            let s = "\(error)"
            XCTAssertTrue(s.contains("model.safetensors") && s.contains("mlp.gate_proj.weight") && s.contains("[512, 256]"), s)
        }
        config["intermediate_size"] = 256
        config["architectures"] = ["GPT2LMHeadModel"]
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try loadHFModel(directory: tmp.path, device: device)) { error in
            let s = "\(error)"
            XCTAssertTrue(error is FormatError && s.contains("config.json") && s.contains("GPT2LMHeadModel")
                          && s.contains("Qwen2ForCausalLM"), s)
        }
    }
}
