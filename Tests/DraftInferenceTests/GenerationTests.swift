import DraftDevice
import DraftInference
import DraftModel
import XCTest

final class GenerationTests: XCTestCase {
    /// Continuous batching gives each prompt exactly the tokens it gets alone: prompts of different lengths through
    /// 3 slots (so later prompts take finished sequences' slots), greedy and sampled.
    func testBatchedGenerationEqualsOnePromptAtATime() throws {
        let device = CPUDevice(threads: 2)
        let model = try makeTinyDraft(device: device)
        let engine = try engine(for: model)
        var rng = SplitMix64(seed: 21)
        let prompts = [4, 9, 1, 6, 12, 3, 7].map { n in (0..<n).map { _ in Int32(rng.next() % 97) } }
        for sampling in [SamplingParameters(temperature: 0), SamplingParameters(temperature: 0.9, topP: 0.9, seed: 4)] {
            // Token 5 as a stop token, and lengths of 3..15 new tokens, so sequences end at different steps.
            let settings = GenerationSettings(sampling: sampling, maxNewTokens: 15, stopTokens: [5])
            let generator = try BatchGenerator(engine: engine, batchSize: 3)
            var batched = [GeneratedSequence?](repeating: nil, count: prompts.count)
            try generator.generate(prompts: prompts, settings: settings) { batched[$0.index] = $0 }
            let cache = try KVCache(config: engine.config, device: device, slotCount: 1)
            for (i, prompt) in prompts.enumerated() {
                let stream = try TokenStream(engine: engine, cache: cache, slot: 0, prompt: prompt, settings: settings,
                                             seed: settings.seed(forPrompt: i))
                var alone: [Int32] = []
                while let token = try stream.next() { alone.append(token) }
                XCTAssertEqual(batched[i]?.outputIDs, alone, "prompt \(i), \(sampling)")
                XCTAssertEqual(batched[i]?.finishReason, stream.finishReason)
                XCTAssertEqual(batched[i]?.promptTokens, prompt.count)
            }
        }
    }

    /// Equal prompts (distill's four temperatures of one prompt) are prefilled once, and every sequence still gets
    /// the tokens it gets alone. Capacity 12 ends the 9-token prompt B after 4 tokens while the A's run 5, so both
    /// ways of sharing happen: the second A takes the first's prefill in step 1, and the third and fourth A copy
    /// from an A still running when a slot frees.
    func testEqualPromptsSharePrefillAndKeepTheirTokens() throws {
        let device = CPUDevice(threads: 2)
        let engine = try engine(for: try makeTinyDraft(device: device))
        let a: [Int32] = [11, 42, 7, 93, 20, 64], b: [Int32] = [3, 8, 15, 29, 31, 47, 52, 70, 88]
        let prompts = [a, a, b, a, a]
        let sampling = zip([Float(0), 0.9, 0, 0.6, 1.0], [UInt64(1), 2, 3, 4, 5]).map {
            SamplingParameters(temperature: $0, seed: $1)
        }
        let settings = GenerationSettings(sampling: SamplingParameters(), maxNewTokens: 5, stopTokens: [])
        var outputs: [[[Int32]?]] = []
        for shares in [true, false] {
            let generator = try BatchGenerator(engine: engine, batchSize: 3, capacity: 12)
            generator.sharesPrompts = shares
            var got = [[Int32]?](repeating: nil, count: prompts.count)
            try generator.generate(prompts: prompts, settings: settings, sampling: sampling) { got[$0.index] = $0.outputIDs }
            XCTAssertEqual(generator.prefill, shares ? .init(tokens: 6 + 9 + 1 + 1, sameStep: 1, fromRunning: 2)
                                                     : .init(tokens: 4 * 6 + 9), "sharing \(shares)")
            outputs.append(got)
        }
        XCTAssertEqual(outputs[0], outputs[1])
        let cache = try KVCache(config: engine.config, device: device, slotCount: 1, capacity: 12)
        for (i, prompt) in prompts.enumerated() {
            let alone = GenerationSettings(sampling: sampling[i], maxNewTokens: 5, stopTokens: [])
            let stream = try TokenStream(engine: engine, cache: cache, slot: 0, prompt: prompt, settings: alone,
                                         seed: sampling[i].seed)
            var tokens: [Int32] = []
            while let token = try stream.next() { tokens.append(token) }
            XCTAssertEqual(outputs[0][i], tokens, "prompt \(i)")
        }
        XCTAssertEqual(outputs[0][2]?.count, 4, "B ends at the capacity")
    }

    func testAPromptLongerThanTheContextIsRefused() throws {
        let device = CPUDevice(threads: 1)
        let engine = try engine(for: try makeTinyDraft(device: device, maxSeqLen: 16))
        let generator = try BatchGenerator(engine: engine, batchSize: 2)
        let settings = GenerationSettings(sampling: SamplingParameters(), maxNewTokens: 4, stopTokens: [])
        XCTAssertThrowsError(try generator.generate(prompts: [[1, 2], [Int32](repeating: 3, count: 17)],
                                                    settings: settings) { _ in XCTFail("nothing may run") }) { error in
            XCTAssertEqual("\(error)", "prompt 2 has 17 tokens, longer than the context of 16")
        }
        // A prompt that fills the context stops at it.
        var result: GeneratedSequence?
        try generator.generate(prompts: [[Int32](repeating: 3, count: 15)],
                               settings: GenerationSettings(sampling: SamplingParameters(), maxNewTokens: 10,
                                                            stopTokens: [])) { result = $0 }
        XCTAssertEqual(result?.outputIDs.count, 2)
        XCTAssertEqual(result?.finishReason, .length)
    }
}
