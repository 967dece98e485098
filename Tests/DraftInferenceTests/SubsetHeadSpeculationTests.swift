import DraftDevice
import DraftFormats
import DraftInference
import DraftModel
import XCTest

/// A draft with a subset LM head (`model.head_vocab`) in the inference engine and in speculative decoding: its logits
/// are the training model's over the subset and `-inf` elsewhere (q = 0 there), greedy speculation still reproduces
/// the target exactly, and sampled speculation keeps the target's distribution, including the ids the draft can
/// never propose.
final class SubsetHeadSpeculationTests: XCTestCase {
    let device = CPUDevice(threads: 2)

    /// `makeTinyDraft(seed:)`'s weights with a head over the ids `keep` selects, so q is 0 on the others.
    private func subsetDraft(seed: UInt64, quantizable: Bool = false, keep: (Int) -> Bool) throws -> LlamaModel {
        // Q8_0 needs rows of whole 32-value blocks.
        let plain = quantizable ? try makeTinyDraft(device: device, seed: seed, maxSeqLen: 64, dim: 64, heads: 4, ffnDim: 96)
                                : try makeTinyDraft(device: device, seed: seed, maxSeqLen: 64)
        var config = plain.config
        let ids = (0..<Int32(config.vocabSize)).filter { keep(Int($0)) }
        config.headVocab = ids.count
        config.headVocabSource = "test"
        let model = try LlamaModel(config: config, device: device)
        try model.setParameters(try plain.readParameters())
        try model.setHeadIDs(ids)
        return model
    }

    func testEngineLogitsAreTheSubsetsAndMinusInfinityElsewhere() throws {
        let model = try subsetDraft(seed: 99) { $0 % 3 == 0 || $0 < 10 }
        let ids = Set(try XCTUnwrap(model.headIDs))
        let prompt: [Int32] = [5, 17, 3, 40, 2]
        let expected = try model.logits(tokens: prompt, batch: 1, seqLen: prompt.count)
        let e = try engine(for: model)
        let cache = try KVCache(config: e.config, device: device, slotCount: 1, capacity: 64)
        let logits = try e.forward([SequenceChunk(slot: 0, tokens: prompt, start: 0)], cache: cache, select: .allRows)
        let v = model.config.vocabSize
        for r in 0..<prompt.count {
            let row = logits.row(r)
            for id in 0..<v {
                if ids.contains(Int32(id)) {
                    XCTAssertEqual(row[id], expected[r * v + id], accuracy: 1e-4 * max(1, abs(expected[r * v + id])))
                } else {
                    XCTAssertEqual(row[id], -.infinity, "row \(r), id \(id)")
                }
            }
        }
    }

    /// Quantized at load (`--draft-dtype q8_0`), a subset head scores the subset's Q8_0 rows: the logits there are
    /// the full quantized head's (the rows are copied whole, never re-encoded) and `-inf` elsewhere.
    func testQuantizedSubsetHeadScoresTheQuantizedRows() throws {
        let model = try subsetDraft(seed: 41, quantizable: true) { $0 % 4 == 1 || $0 < 6 }
        let ids = Set(try XCTUnwrap(model.headIDs))
        let subset = try DecoderWeights(llama: model).quantized(to: .q8_0, device: device, source: "test").weights
        var full = subset
        full.headIDs = nil
        let config = DecoderConfig(model: model.config, bosTokenID: nil, eosTokenIDs: [])
        let prompt: [Int32] = [5, 17, 3, 40, 2, 9]
        // Copied out: the rows of `ForwardLogits` live in the engine's buffer.
        func logits(_ weights: DecoderWeights) throws -> [[Float]] {
            let e = try DecoderEngine(config: config, weights: weights, device: device)
            let cache = try KVCache(config: config, device: device, slotCount: 1, capacity: 64)
            let out = try e.forward([SequenceChunk(slot: 0, tokens: prompt, start: 0)], cache: cache, select: .allRows)
            return (0..<out.rowCount).map { Array(out.row($0)) }
        }
        let a = try logits(subset), b = try logits(full)
        let fp32 = try model.logits(tokens: prompt, batch: 1, seqLen: prompt.count)
        var moved = 0.0
        for r in 0..<prompt.count {
            let rowA = a[r], rowB = b[r]
            for id in 0..<config.vocabSize {
                if ids.contains(Int32(id)) {
                    XCTAssertEqual(rowA[id], rowB[id], accuracy: 1e-5 * max(1, abs(rowB[id])), "row \(r), id \(id)")
                    moved = max(moved, Double(abs(rowA[id] - fp32[r * config.vocabSize + id])))
                } else {
                    XCTAssertEqual(rowA[id], -.infinity, "row \(r), id \(id)")
                }
            }
        }
        XCTAssertGreaterThan(moved, 0, "the head was quantized")
    }

    func testGreedySpeculationWithASubsetDraftEqualsTheTarget() throws {
        let target = try engine(for: makeTinyDraft(device: device, seed: 7, maxSeqLen: 64))
        let draftModel = try subsetDraft(seed: 7) { $0 % 2 == 0 }
        let ids = Set(try XCTUnwrap(draftModel.headIDs))
        let draft = try engine(for: draftModel)
        for gamma in [1, 3] {
            let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: gamma,
                                                 sampling: SamplingParameters(), capacity: 64)
            var counts = SpeculationCounts(gamma: gamma)
            var emittedOutside = 0
            for prompt: [Int32] in [[5, 17, 3], [42], [9, 9, 60, 1, 33, 2, 71]] {
                let cache = try KVCache(config: target.config, device: device, slotCount: 1, capacity: 64)
                let reference = try plainDecode(engine: target, cache: cache, prompt: prompt, maxNewTokens: 24,
                                                stopTokens: [], sampling: SamplingParameters(), seed: 0).outputIDs
                let spec = try decoder.generate(prompt: prompt, maxNewTokens: 24, stopTokens: [], seed: 1)
                XCTAssertEqual(spec.outputIDs, reference, "gamma \(gamma), prompt \(prompt)")
                emittedOutside += reference.filter { !ids.contains($0) }.count
                counts = counts + spec.counts
            }
            // The target's greedy path leaves the subset somewhere, so the test sees corrections of q = 0 tokens.
            XCTAssertGreaterThan(emittedOutside, 0)
            XCTAssertGreaterThan(counts.accepted, 0, "the draft shares the target's weights on its subset")
            XCTAssertLessThan(counts.accepted, counts.proposed)
        }
    }

    /// The chi-square check of `SpeculativeSamplingDistributionTests`, with a draft whose head scores 6 of 12 ids:
    /// the other 6 can only come from the residual max(0, p - q), and the joint distribution must still be p's.
    func testSampledSpeculationWithASubsetDraftKeepsTheTargetsDistribution() throws {
        let device = CPUDevice(threads: 1)
        let base = ModelConfig(vocabSize: 12, dim: 32, layers: 1, heads: 4, kvHeads: 2, ffnDim: 64, maxSeqLen: 16)
        func weights(seed: UInt64, scale: Float) throws -> [Float] {
            let m = try LlamaModel(config: base, device: device)
            try m.initializeParameters(seed: seed)
            return try m.readParameters().map { $0 * scale }
        }
        let targetModel = try LlamaModel(config: base, device: device)
        let targetWeights = try weights(seed: 3, scale: 6)
        try targetModel.setParameters(targetWeights)
        var subsetConfig = base
        subsetConfig.headVocab = 6
        subsetConfig.headVocabSource = "test"
        let draftModel = try LlamaModel(config: subsetConfig, device: device)
        try draftModel.setParameters(zip(targetWeights, try weights(seed: 4, scale: 6)).map { 0.9 * $0 + 0.1 * $1 })
        try draftModel.setHeadIDs([0, 2, 3, 5, 8, 11])
        let target = try engine(for: targetModel), draft = try engine(for: draftModel)
        let prompt: [Int32] = [1, 7]

        let expected = try ChiSquare.targetPairs(target, device: device, prompt: prompt, vocab: 12, temperature: 1)

        let decoder = try SpeculativeDecoder(target: target, draft: draft, gamma: 3,
                                             sampling: SamplingParameters(temperature: 1), capacity: 16)
        let (statistic, cells, pValue, totals) = try ChiSquare.speculativePairs(decoder, prompt: prompt, vocab: 12,
                                                                                expected: expected, samples: 12_000,
                                                                                seedOffset: 3)
        // The first token's marginal mass on ids the draft cannot propose.
        let outsideMass = [1, 4, 6, 7, 9, 10].reduce(0.0) { $0 + expected[($1 * 12)..<($1 * 12 + 12)].reduce(0, +) }
        print(String(format: "subset-head draft chi-square: %.1f over %d cells, p-value %.3f, acceptance %.3f, target mass outside the subset %.3f",
                     statistic, cells, pValue, totals.acceptanceRate, outsideMass))
        XCTAssertGreaterThan(pValue, 1e-3)
        XCTAssertGreaterThan(outsideMass, 0.05, "the target must put real mass where q is 0")
        XCTAssertGreaterThan(totals.acceptanceRate, 0.05)
        XCTAssertLessThan(totals.acceptanceRate, 0.95)
    }
}
