import DraftDevice
import DraftInference
import DraftModel
import DraftTokenizer
import Foundation
import XCTest

/// Speculative decoding with the real target, SmolLM2-135M-Instruct Q4_1: lossless at temperature 0 for a
/// random-weight draft and for the target as its own draft, the target accepting itself when sampling, and the
/// acceptance rate of a real draft agreeing with an independent numpy implementation of Leviathan's rule
/// (`scripts/reference/speculative_reference.py`). A trained SwiftDraft draft is checked through the CLI
/// (`SpeculateCLITests`).
final class SmolLM2SpeculationTests: XCTestCase {
    let device = CPUDevice()
    static let texts = [
        "The history of the city begins with", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.",
        "She opened the letter and read", "In the morning the ships left the harbour",
        "import numpy as np\n\ndef normalize(x):", "The three most important rules of cooking are",
        "Once upon a time, in a small village,", "for i in range(10):\n    if i % 2 == 0:",
        "The committee met on Tuesday to discuss", "Water boils at a lower temperature on a mountain because",
    ]

    func loadTarget() throws -> LoadedModel {
        let path = SmolLM2RealTargetTests.gguf.path
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) is missing: run scripts/fetch-assets.sh")
            throw XCTSkip("no SmolLM2 GGUF")
        }
        return try loadModel(path, device: device)
    }

    func greedy(_ engine: DecoderEngine, _ prompt: [Int32], _ n: Int, stops: Set<Int32>) throws -> [Int32] {
        let cache = try KVCache(config: engine.config, device: device, slotCount: 1, capacity: prompt.count + n + 8)
        return try plainDecode(engine: engine, cache: cache, prompt: prompt, maxNewTokens: n, stopTokens: stops,
                               sampling: SamplingParameters(), seed: 0).outputIDs
    }

    func testGreedyIsLosslessForARandomDraftAndForTheTargetItself() throws {
        let model = try loadTarget()
        let target = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let stops = Set(model.config.eosTokenIDs)
        let random = try LlamaModel(config: ModelConfig(vocabSize: model.config.vocabSize, dim: 64, layers: 2, heads: 4,
                                                        kvHeads: 2, ffnDim: 128, maxSeqLen: 256, ropeTheta: 10_000),
                                    device: device)
        try random.initializeParameters(seed: 3)
        let drafts = [("random-weight draft", try engine(for: random)),
                      ("target as its own draft", try DecoderEngine(config: model.config, weights: model.weights, device: device))]
        let prompts = Self.texts.prefix(4).map { model.tokenizer.encode($0) }
        let expected = try prompts.map { try greedy(target, $0, 40, stops: stops) }
        for (name, draft) in drafts {
            for gamma in [1, 3, 5] {
                let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: gamma,
                                                     sampling: SamplingParameters(), capacity: 128)
                var counts = SpeculationCounts(gamma: gamma)
                for (prompt, reference) in zip(prompts, expected) {
                    let spec = try decoder.generate(prompt: prompt, maxNewTokens: 40, stopTokens: stops, seed: 1)
                    XCTAssertEqual(spec.outputIDs, reference, "\(name), gamma \(gamma)")
                    counts = counts + spec.counts
                }
                print("SmolLM2 greedy, \(name), gamma \(gamma): accepted \(counts.accepted) of \(counts.proposed)")
                if name == "target as its own draft" {
                    XCTAssertEqual(counts.accepted, counts.proposed, "gamma \(gamma): the target must accept its own argmax")
                } else {
                    XCTAssertLessThan(counts.acceptanceRate, 0.5, "a random draft cannot agree with SmolLM2 this often")
                }
            }
        }
    }

    /// The same weights give the same logits only up to float summation order: the draft scores one row at a time and
    /// the target gamma + 1 rows, which may take another matrix path. The rate is stated, not assumed to be 1.
    func testTargetAsItsOwnDraftAcceptsAlmostEverythingWhenSampling() throws {
        let model = try loadTarget()
        let target = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let draft = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let stops = Set(model.config.eosTokenIDs)
        for temperature: Float in [0.6, 1.0] {
            let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3,
                                                 sampling: SamplingParameters(temperature: temperature), capacity: 128)
            var counts = SpeculationCounts(gamma: 3)
            for (i, text) in Self.texts.prefix(4).enumerated() {
                counts = counts + (try decoder.generate(prompt: model.tokenizer.encode(text), maxNewTokens: 40,
                                                        stopTokens: stops, seed: UInt64(i))).counts
            }
            print(String(format: "SmolLM2 as its own draft at T %.1f: accepted %d of %d (%.4f)", temperature,
                         counts.accepted, counts.proposed, counts.acceptanceRate))
            XCTAssertGreaterThan(counts.proposed, 60)
            XCTAssertGreaterThanOrEqual(counts.acceptanceRate, 0.98, "T \(temperature)")
        }
    }

    /// A real draft (SmolLM2 requantized to Q4_0 by llama-quantize: same family, different weights, so acceptance is
    /// well inside (0, 1)) measured by SwiftDraft, by the numpy reference (live) and by transformers (a committed
    /// fixture) on the same prompts, with independent random streams. Each mean per-prompt difference of the rates
    /// must lie within 3.5 standard errors of 0.
    func testAcceptanceAgreesWithAnIndependentReference() throws {
        let model = try loadTarget()
        let draftFile = FileManager.default.temporaryDirectory.appendingPathComponent("smollm2-q4_0-\(UUID()).gguf")
        defer { try? FileManager.default.removeItem(at: draftFile) }
        let bin = try LoaderFixtures.llamaBin.get()
        try LoaderFixtures.execute("\(bin)/llama-quantize", ["--allow-requantize", SmolLM2RealTargetTests.gguf.path,
                                                             draftFile.path, "Q4_0"])
        let draftModel = try loadModel(draftFile.path, device: device)
        let prompts = Self.texts.map { model.tokenizer.encode($0) }
        let (gamma, temperature, newTokens) = (3, Float(0.6), 32)
        let stops = model.config.eosTokenIDs

        var args = [LoaderFixtures.repo.appendingPathComponent("scripts/reference/speculative_reference.py").path,
                    "--target", SmolLM2RealTargetTests.gguf.path, "--draft", draftFile.path, "--gamma", "\(gamma)",
                    "--temperature", "\(temperature)", "--max-new-tokens", "\(newTokens)", "--seed", "1"]
        for p in prompts { args += ["--ids", p.map(String.init).joined(separator: " ")] }
        for s in stops { args += ["--stop", "\(s)"] }
        let out = try LoaderFixtures.execute(try LoaderFixtures.python.get(), args)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: out) as? [String: Any])
        let reference = try XCTUnwrap(json["per_prompt"] as? [[Int]]).map { (proposed: $0[0], accepted: $0[1]) }

        let target = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let draft = try DecoderEngine(config: draftModel.config, weights: draftModel.weights, device: device)
        let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: gamma,
                                             sampling: SamplingParameters(temperature: temperature), capacity: 128)
        var ours: [(proposed: Int, accepted: Int)] = []
        for (i, prompt) in prompts.enumerated() {
            var counts = (proposed: 0, accepted: 0)
            for seed in 0..<3 {
                let c = try decoder.generate(prompt: prompt, maxNewTokens: newTokens, stopTokens: Set(stops),
                                             seed: UInt64(seed * 100 + i)).counts
                counts.proposed += c.proposed
                counts.accepted += c.accepted
            }
            ours.append(counts)
        }
        let ourRate = PairedRates.rate(ours)
        XCTAssertTrue(ourRate > 0.1 && ourRate < 0.95, "the pair should sit well inside (0, 1): \(ourRate)")
        try PairedRates(ours: ours, reference: reference).check("numpy reference")

        // The same rule through transformers (target and draft loaded from these GGUF files, dequantized), recorded
        // by scripts/reference/speculative_transformers_fixture.py for this very draft file.
        let fixture = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: LoaderFixtures.url("speculative-transformers.json"))) as? [String: Any])
        let draftBytes = try Data(contentsOf: draftFile)
        XCTAssertEqual(fixture["draft_sha256"] as? String, draftBytes.withUnsafeBytes { SHA256.hex($0) },
                       "llama-quantize made another Q4_0 file than the one the transformers fixture measured")
        XCTAssertEqual((fixture["prompt_ids"] as? [[Int]])?.map { $0.map(Int32.init) }, prompts, "prompt tokens")
        XCTAssertEqual(fixture["gamma"] as? Int, gamma)
        XCTAssertEqual(fixture["max_new_tokens"] as? Int, newTokens)
        let recorded = try XCTUnwrap(fixture["per_prompt"] as? [[Int]]).map { (proposed: $0[0], accepted: $0[1]) }
        try PairedRates(ours: ours, reference: recorded).check("transformers reference")
    }
}

/// Two measurements of acceptance on the same prompts, compared prompt by prompt: pairing takes the large differences
/// between prompts out of the comparison, and what is left is each side's sampling error.
struct PairedRates {
    let differences: [Double]
    let ours: Double, reference: Double, referenceProposed: Int

    static func rate(_ counts: [(proposed: Int, accepted: Int)]) -> Double {
        Double(counts.reduce(0) { $0 + $1.accepted }) / Double(max(counts.reduce(0) { $0 + $1.proposed }, 1))
    }

    init(ours: [(proposed: Int, accepted: Int)], reference: [(proposed: Int, accepted: Int)]) {
        differences = zip(ours, reference).compactMap { a, b in
            guard a.proposed > 0, b.proposed > 0 else { return nil }
            return Double(a.accepted) / Double(a.proposed) - Double(b.accepted) / Double(b.proposed)
        }
        self.ours = Self.rate(ours)
        self.reference = Self.rate(reference)
        referenceProposed = reference.reduce(0) { $0 + $1.proposed }
    }

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let m = Double(differences.count)
        XCTAssertGreaterThanOrEqual(differences.count, 8, file: file, line: line)
        XCTAssertGreaterThan(referenceProposed, 150, "\(name): too few proposals to mean something", file: file, line: line)
        let mean = differences.reduce(0, +) / m
        let standardError = (differences.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (m - 1) / m).squareRoot()
        print("acceptance: swiftdraft " + String(format: "%.3f", ours) + ", \(name) "
              + String(format: "%.3f (%d proposals); mean paired difference over %d prompts %.3f, SE %.3f, bound 3.5 SE = %.3f",
                       reference, referenceProposed, differences.count, mean, standardError, 3.5 * standardError))
        XCTAssertLessThan(abs(mean), 3.5 * standardError, name, file: file, line: line)
    }
}
