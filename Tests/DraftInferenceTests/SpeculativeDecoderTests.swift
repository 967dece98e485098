import DraftDevice
import DraftInference
import DraftModel
import XCTest

/// Speculative decoding end to end on small in-memory models: lossless at temperature 0 for any draft, and a draft
/// identical to its target keeps every proposal at any temperature.
final class SpeculativeDecoderTests: XCTestCase {
    let device = CPUDevice(threads: 2)
    let prompts: [[Int32]] = [[5, 17, 3], [42], [9, 9, 60, 1, 33, 2, 71]]

    func greedyReference(_ target: DecoderEngine, _ prompt: [Int32], _ n: Int) throws -> [Int32] {
        let cache = try KVCache(config: target.config, device: device, slotCount: 1, capacity: 64)
        return try plainDecode(engine: target, cache: cache, prompt: prompt, maxNewTokens: n, stopTokens: [],
                               sampling: SamplingParameters(), seed: 0).outputIDs
    }

    func testGreedyOutputEqualsTheTargetsForAnyDraft() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let drafts = [("random draft", try engine(for: makeTinyDraft(device: device, seed: 99, maxSeqLen: 64))),
                      ("target as its own draft", try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64)))]
        for (name, draft) in drafts {
            for gamma in [1, 3, 5] {
                let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: gamma,
                                                     sampling: SamplingParameters(), capacity: 64)
                var counts = SpeculationCounts(gamma: gamma)
                for prompt in prompts {
                    let spec = try decoder.generate(prompt: prompt, maxNewTokens: 24, stopTokens: [], seed: 1)
                    XCTAssertEqual(spec.outputIDs, try greedyReference(target, prompt, 24), "\(name), gamma \(gamma)")
                    counts = counts + spec.counts
                }
                if name == "target as its own draft" {
                    XCTAssertEqual(counts.accepted, counts.proposed, "gamma \(gamma): the target must accept itself")
                } else {
                    XCTAssertLessThan(counts.acceptanceRate, 0.9, "a random draft should disagree somewhere")
                }
                XCTAssertEqual(counts.emitted, counts.accepted + counts.targetPasses)
            }
        }
    }

    func testAdaptiveDraftingStopsProposingAndStaysLossless() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let draft = try engine(for: makeTinyDraft(device: device, seed: 99, maxSeqLen: 64))
        var proposedAt: [Float: [Int]] = [:]
        for pMin: Float in [0, 0.2, 1] {
            let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3, sampling: SamplingParameters(),
                                                 capacity: 64, minDraftProbability: pMin)
            var counts = SpeculationCounts(gamma: 3)
            for prompt in prompts {
                let spec = try decoder.generate(prompt: prompt, maxNewTokens: 24, stopTokens: [], seed: 1)
                XCTAssertEqual(spec.outputIDs, try greedyReference(target, prompt, 24), "p-min \(pMin)")
                counts = counts + spec.counts
            }
            proposedAt[pMin] = counts.proposedAt
            // Every round but a prompt's last (no budget left) proposes at least one token.
            XCTAssertGreaterThanOrEqual(counts.proposedAt[0], counts.targetPasses - prompts.count, "p-min \(pMin)")
        }
        // A random draft is never sure (its largest probability is far below 1): only the first proposal is made.
        XCTAssertEqual(proposedAt[1]?[1], 0)
        // Without it every round proposes gamma tokens, but for a prompt's last two (less budget left).
        let all = try XCTUnwrap(proposedAt[0])
        XCTAssertGreaterThanOrEqual(all[2], all[0] - 2 * prompts.count, "without p-min: \(all)")
        let some = try XCTUnwrap(proposedAt[0.2])
        XCTAssertTrue(some[1] > 0 && some[1] < some[0], "p-min 0.2 stops some rounds early: \(some)")
        XCTAssertThrowsError(try SpeculativeDecoder(target: target, draft: draft, gamma: 3, sampling: SamplingParameters(),
                                                    capacity: 64, minDraftProbability: 1.5))
    }

    func testTargetAsItsOwnDraftAcceptsEverythingWhenSampling() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let draft = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3,
                                             sampling: SamplingParameters(temperature: 0.8), capacity: 64)
        var counts = SpeculationCounts(gamma: 3)
        for (i, prompt) in prompts.enumerated() {
            counts = counts + (try decoder.generate(prompt: prompt, maxNewTokens: 30, stopTokens: [], seed: UInt64(i))).counts
        }
        print("target as its own draft at T 0.8: accepted \(counts.accepted) of \(counts.proposed), tau \(counts.tau)")
        // Equal weights on one device compute equal logits, so p == q exactly and min(1, p/q) = 1.
        XCTAssertEqual(counts.accepted, counts.proposed)
        XCTAssertEqual(counts.perPosition, [1, 1, 1])
    }

    func testSampledRunsAreReproducibleFromTheSeed() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let draft = try engine(for: makeTinyDraft(device: device, seed: 99, maxSeqLen: 64))
        let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3,
                                             sampling: SamplingParameters(temperature: 1), capacity: 64)
        let a = try decoder.generate(prompt: prompts[0], maxNewTokens: 20, stopTokens: [], seed: 5)
        let b = try decoder.generate(prompt: prompts[0], maxNewTokens: 20, stopTokens: [], seed: 5)
        let c = try decoder.generate(prompt: prompts[0], maxNewTokens: 20, stopTokens: [], seed: 6)
        XCTAssertEqual(a.outputIDs, b.outputIDs)
        XCTAssertEqual(a.counts.accepted, b.counts.accepted)
        XCTAssertNotEqual(a.outputIDs, c.outputIDs)
        XCTAssertEqual(a.outputIDs.count, 20)
    }

    func testStopTokenEndsTheSequence() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let plain = try greedyReference(target, prompts[0], 24)
        let stop = plain[5]
        let firstStop = plain.firstIndex(of: stop)!
        let decoder = try SpeculativeDecoder(target: target, draft: target, gamma: 3, sampling: SamplingParameters(),
                                             capacity: 64)
        let spec = try decoder.generate(prompt: prompts[0], maxNewTokens: 24, stopTokens: [stop], seed: 0)
        XCTAssertEqual(spec.outputIDs, Array(plain.prefix(firstStop)))
        XCTAssertEqual(spec.finishReason, .eos)
    }

    func testBadInput() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        XCTAssertThrowsError(try SpeculativeDecoder(target: target, draft: target, gamma: 0,
                                                    sampling: SamplingParameters(), capacity: 64)) { error in
            XCTAssertTrue("\(error)".contains("--gamma"))
        }
        let decoder = try SpeculativeDecoder(target: target, draft: target, gamma: 3, sampling: SamplingParameters(),
                                             capacity: 32)
        XCTAssertThrowsError(try decoder.generate(prompt: [Int32](repeating: 1, count: 20), maxNewTokens: 20,
                                                  stopTokens: [], seed: 0)) { error in
            XCTAssertTrue("\(error)".contains("context"), "\(error)")
        }
    }
}

/// Losslessness when sampling, through the real engine: a 12-token target and a different draft; the joint
/// distribution of the first two emitted tokens must equal the target's own, `p(x1) p(x2 | x1)`, by a chi-square test
/// (cells with an expected count below 5 pooled). `SpeculativeVerificationTests` shows the same test rejects broken
/// acceptance rules.
final class SpeculativeSamplingDistributionTests: XCTestCase {
    func testSpeculativeSamplesHaveTheTargetsJointDistribution() throws {
        let device = CPUDevice(threads: 1)
        func model(seed: UInt64, scale: Float) throws -> LlamaModel {
            let config = ModelConfig(vocabSize: 12, dim: 32, layers: 1, heads: 4, kvHeads: 2, ffnDim: 64, maxSeqLen: 16)
            let m = try LlamaModel(config: config, device: device)
            try m.initializeParameters(seed: seed)
            try m.setParameters(try m.readParameters().map { $0 * scale })
            return m
        }
        // A related draft (a blend of the target's weights and another model's) is kept often, not always.
        let targetModel = try model(seed: 3, scale: 6), other = try model(seed: 4, scale: 6)
        let draftModel = try model(seed: 3, scale: 1)
        let blend = zip(try targetModel.readParameters(), try other.readParameters()).map { 0.9 * $0 + 0.1 * $1 }
        try draftModel.setParameters(blend)
        let target = try engine(for: targetModel)
        let draft = try engine(for: draftModel)
        let prompt: [Int32] = [1, 7]
        let temperature: Float = 1

        // The exact joint distribution from the target's own logits.
        let expected = try ChiSquare.targetPairs(target, device: device, prompt: prompt, vocab: 12, temperature: temperature)

        let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3,
                                             sampling: SamplingParameters(temperature: temperature), capacity: 16)
        let (statistic, cells, pValue, totals) = try ChiSquare.speculativePairs(decoder, prompt: prompt, vocab: 12,
                                                                                expected: expected, samples: 20_000,
                                                                                seedOffset: 1)
        print(String(format: "engine chi-square: %.1f over %d cells, p-value %.3f, acceptance %.3f",
                     statistic, cells, pValue, totals.acceptanceRate))
        XCTAssertGreaterThan(pValue, 1e-3)
        XCTAssertGreaterThan(totals.acceptanceRate, 0.05, "the draft must be kept sometimes for the test to mean much")
        XCTAssertLessThan(totals.acceptanceRate, 0.95, "and rejected sometimes")
    }
}
