import DraftDevice
import DraftInference
import Foundation
import XCTest

/// The real target, SmolLM2-135M-Instruct Q4_1 (the asset cache's GGUF, `scripts/fetch-assets.sh`), through
/// `loadModel` with its quantized weights, against transformers loading the same GGUF (dequantized to fp32), recorded
/// in `Fixtures/smollm2.json` by `scripts/reference/inference_fixtures.py`.
final class SmolLM2RealTargetTests: XCTestCase {
    static let gguf = LoaderFixtures.cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

    func reference() throws -> [String: Any] {
        let data = try Data(contentsOf: LoaderFixtures.url("smollm2.json"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func loadTarget(_ device: any Device) throws -> LoadedModel {
        guard FileManager.default.fileExists(atPath: Self.gguf.path) else {
            XCTFail("\(Self.gguf.path) is missing: run scripts/fetch-assets.sh")
            throw XCTSkip("no SmolLM2 GGUF")
        }
        return try loadModel(Self.gguf.path, device: device)
    }

    /// Greedy 64-token continuations of 5 prompts (text, story, code, two chats through the GGUF's template) equal
    /// transformers' token for token; the top-2 logit margins along the way are printed (transformers' smallest: 0.016).
    /// Both with exact products and with the 16-bit activations that decode runs on by default (8-bit ones, as
    /// llama.cpp's, flip close choices: the France chat answers "L'Étoile" with them).
    func testGreedyContinuationsMatchTransformers() throws {
        for mode in [QuantizedActivations.exact, .int16] where mode == .exact || integerKernelsAvailable {
            try checkGreedyContinuations(CPUDevice(quantizedActivations: mode))
        }
    }

    private func checkGreedyContinuations(_ device: CPUDevice) throws {
        let model = try loadTarget(device)
        let template = try ChatTemplate(template: try XCTUnwrap(model.chatTemplate, "the GGUF's chat template"))
        let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let stops = Set(model.config.eosTokenIDs)
        for g in try XCTUnwrap(reference()["generations"] as? [[String: Any]]) {
            let id = try XCTUnwrap(g["id"] as? String)
            let expectedPrompt = try XCTUnwrap(g["prompt_ids"] as? [Int]).map(Int32.init)
            let expected = try XCTUnwrap(g["output_ids"] as? [Int]).map(Int32.init)
            let text: String
            if let messages = g["messages"] as? [[String: String]] {
                text = template.render(messages.map { ChatMessage(role: $0["role"]!, content: $0["content"]!) })
                XCTAssertEqual(text, g["rendered"] as? String, "\(id): chat template rendering")
            } else {
                text = try XCTUnwrap(g["prompt"] as? String)
            }
            let prompt = model.tokenizer.encode(text)
            XCTAssertEqual(prompt, expectedPrompt, "\(id): prompt tokens")

            let cache = try KVCache(device: device, layers: model.config.layers, slotCount: 1,
                                    capacity: prompt.count + expected.count, kvHeads: model.config.kvHeads,
                                    headDim: model.config.headDim)
            var output: [Int32] = []
            var margins: [Float] = []
            var chunk = SequenceChunk(slot: 0, tokens: prompt, start: 0)
            while output.count < expected.count {
                let logits = try engine.forward([chunk], cache: cache, select: .lastRow)
                let row = logits.row(0)
                let best = argmax(row)
                var second = -Float.infinity
                for (i, v) in row.enumerated() where i != best && v > second { second = v }
                margins.append(row[best] - second)
                output.append(Int32(best))
                if stops.contains(Int32(best)) { break }
                chunk = SequenceChunk(slot: 0, tokens: [Int32(best)], start: prompt.count + output.count - 1)
            }
            XCTAssertEqual(output, Array(expected.prefix(output.count)), "\(id), \(device.quantizedActivations): greedy continuation")
            let minMargin = margins.min() ?? 0
            print("SmolLM2 \(id) (\(device.quantizedActivations) activations): \(output.count) greedy tokens \(output == Array(expected.prefix(output.count)) ? "identical" : "DIFFERENT"), min top-2 margin \(String(format: "%.4f", minMargin)) (transformers \(String(format: "%.4f", g["min_margin"] as? Double ?? .nan))): \(model.tokenizer.decode(output).prefix(60).debugDescription)")
        }
    }

    /// Perplexity as llama-perplexity counts it (chunks of the context, second halves scored, no BOS: the GGUF's
    /// add_bos_token is false) equals transformers' within 0.5%, and is near ASSETS.md's facts (bisect.py about 5.5).
    func testPerplexityMatchesTransformers() throws {
        let device = CPUDevice()
        let model = try loadTarget(device)
        let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let texts: [String: String] = [
            "bisect.py": try String(contentsOfFile: "/usr/lib/python3.11/bisect.py", encoding: .utf8),
            "pride-and-prejudice": String(try String(contentsOf: LoaderFixtures.cache.appendingPathComponent("austen/prideprejudice.txt"),
                                                     encoding: .utf8).prefix(10_000)),
        ]
        let ppl = try XCTUnwrap(reference()["perplexity"] as? [String: [String: Any]])
        for (name, text) in texts.sorted(by: { $0.key < $1.key }) {
            let ref = try XCTUnwrap(ppl[name])
            let tokens = model.tokenizer.encode(text)
            XCTAssertEqual(tokens.count, ref["tokens"] as? Int, "\(name): token count")
            for w in try XCTUnwrap(ref["windows"] as? [[String: Any]]) {
                let context = try XCTUnwrap(w["n_ctx"] as? Int)
                guard tokens.count >= 2 * context else { continue }  // llama-perplexity needs two chunks
                let expected = try XCTUnwrap(w["ppl"] as? Double)
                let ours = try perplexity(engine: engine, tokens: tokens, context: context, bos: nil)
                XCTAssertEqual(ours.scoredTokens, w["tokens_scored"] as? Int)
                let relative = abs(ours.perplexity - expected) / expected
                print("SmolLM2 ppl \(name) ctx \(context): \(String(format: "%.4f", ours.perplexity)) vs transformers \(String(format: "%.4f", expected)) (\(String(format: "%.3f", 100 * relative))%)")
                XCTAssertLessThanOrEqual(relative, 0.005, "\(name) ctx \(context)")
                if name == "bisect.py" && context == 256 {
                    XCTAssertEqual(ours.perplexity, 5.5, accuracy: 0.5, "ASSETS.md: about 5.5 on bisect.py")
                }
            }
        }
    }
}
