import DraftDevice
import DraftInference
import Foundation
import XCTest

/// The real target end to end: SmolLM2-135M-Instruct's Q4_1 GGUF, its own chat template and tokenizer, greedy.
final class SmolLM2ChatTests: XCTestCase {
    static func smolLM2GGUF() throws -> String {
        let cache = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft").path
        let directory = URL(fileURLWithPath: cache).appendingPathComponent("smollm2")
        let found = FileManager.default.enumerator(atPath: directory.path)?.compactMap { $0 as? String }
            .first { $0.hasSuffix("SmolLM2-135M-Instruct.Q4_1.gguf") }
        guard let found else {
            throw XCTSkip("SmolLM2-135M-Instruct.Q4_1.gguf not under \(directory.path): run scripts/fetch-assets.sh")
        }
        return directory.appendingPathComponent(found).path
    }

    func testGreedyAnswerToTheCapitalOfFranceNamesParis() throws {
        let model = try loadModel(try Self.smolLM2GGUF(), device: CPUDevice(threads: 2))
        let template = try ChatTemplate(template: try XCTUnwrap(model.chatTemplate, "the GGUF has a chat template"))
        XCTAssertEqual(template.family, .chatML)
        let prompt = model.tokenizer.encode(template.render([ChatMessage(role: "user",
                                                                        content: "What is the capital of France?")]))
        let engine = try DecoderEngine(config: model.config, weights: model.weights, device: CPUDevice(threads: 2))
        let cache = try KVCache(config: model.config, device: engine.device, slotCount: 1, capacity: prompt.count + 32)
        let stream = try TokenStream(engine: engine, cache: cache, slot: 0, prompt: prompt,
                                     settings: GenerationSettings(sampling: SamplingParameters(temperature: 0),
                                                                  maxNewTokens: 24,
                                                                  stopTokens: Set(model.config.eosTokenIDs)))
        var answer: [Int32] = []
        while let token = try stream.next() { answer.append(token) }
        let text = model.tokenizer.decode(answer)
        print("SmolLM2 greedy answer: \(text.debugDescription)")
        XCTAssertTrue(text.contains("Paris"), text)
    }
}
