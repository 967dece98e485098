import DraftDevice
import DraftFormats
import DraftModel
import Foundation
import XCTest

/// The subset LM head (`model.head_vocab`): with the whole vocabulary it is the ordinary head bit for bit; with a
/// subset it matches PyTorch restricted to the subset (fixtures from scripts/reference/make_head_vocab_fixtures.py).
final class HeadVocabTests: XCTestCase {
    func testFullVocabularyTiedHeadIsBitIdentical() throws { try checkFullVocabulary(tied: true) }
    func testFullVocabularyUntiedHeadIsBitIdentical() throws { try checkFullVocabulary(tied: false) }
    func testTiedSubsetHeadMatchesPyTorch() throws { try checkSubsetParity("head-vocab-tied") }
    func testUntiedSubsetHeadMatchesPyTorch() throws { try checkSubsetParity("head-vocab-untied") }

    /// Two accumulated micro-batches (the second on top of the first's gradients, as gradient accumulation does)
    /// with ignored targets, and the logits, against the same model without `head_vocab`.
    private func checkFullVocabulary(tied: Bool) throws {
        let plain = ModelConfig(vocabSize: 96, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffnDim: 64, maxSeqLen: 32,
                                tieEmbeddings: tied)
        var full = plain
        full.headVocab = plain.vocabSize
        full.headVocabSource = "web"
        let device = CPUDevice(threads: 2)
        let a = try LlamaModel(config: plain, device: device), b = try LlamaModel(config: full, device: device)
        try a.initializeParameters(seed: 7)
        try b.initializeParameters(seed: 7)
        try b.setHeadIDs((0..<Int32(plain.vocabSize)).map { $0 })
        XCTAssertEqual(b.headIDs?.count, plain.vocabSize)
        var rng = SplitMix64(seed: 11)
        try a.zeroGradients()
        try b.zeroGradients()
        for _ in 0..<2 {
            let stream = (0...(2 * 16)).map { _ in Int32(rng.next() % UInt64(plain.vocabSize)) }
            let tokens = Array(stream.dropLast())
            var targets = Array(stream.dropFirst())
            targets[3] = -1
            let ra = try a.forwardBackward(tokens: tokens, targets: targets, batch: 2, seqLen: 16, lossScale: 0.25)
            let rb = try b.forwardBackward(tokens: tokens, targets: targets, batch: 2, seqLen: 16, lossScale: 0.25)
            XCTAssertEqual(ra.lossSum.bitPattern, rb.lossSum.bitPattern, "loss")
            XCTAssertEqual(ra.targets, rb.targets)
            XCTAssertEqual(b.lastOutsideHeadTargets, 0)
            XCTAssertEqual(try a.logits(tokens: tokens, batch: 2, seqLen: 16).map(\.bitPattern),
                           try b.logits(tokens: tokens, batch: 2, seqLen: 16).map(\.bitPattern), "logits")
        }
        let ga = try a.readGradients(), gb = try b.readGradients()
        XCTAssertTrue(ga.contains { $0 != 0 })
        XCTAssertEqual(ga.map(\.bitPattern), gb.map(\.bitPattern), "gradients")
    }

    private func checkSubsetParity(_ name: String) throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"))
        let file = try SafeTensorsFile(contentsOf: url)
        let config = try JSONDecoder().decode(ModelConfig.self, from: Data(try XCTUnwrap(file.metadata["config"]).utf8))
        let k = try XCTUnwrap(config.headVocab)
        XCTAssertLessThan(k, config.vocabSize)
        let batch = Int(file.metadata["batch"] ?? "") ?? 0, seqLen = Int(file.metadata["seq_len"] ?? "") ?? 0
        let outside = Int(file.metadata["outside_targets"] ?? "") ?? -1
        let inputs = try XCTUnwrap(file.int32s("input_ids")), labels = try XCTUnwrap(file.int32s("labels"))
        let ids = try XCTUnwrap(file.int32s("head_ids"))

        // The ranking rule (count, ties to the smaller id, ascending) is the reference's.
        var counts = [Int](repeating: 0, count: config.vocabSize)
        for t in labels where t >= 0 { counts[Int(t)] += 1 }
        XCTAssertEqual(HeadVocabulary.top(counts: counts, k: k), ids)

        let model = try LlamaModel(config: config, device: CPUDevice(threads: 2))
        var flat = [Float](repeating: .nan, count: model.layout.count)
        for slot in model.layout.slots {
            flat.replaceSubrange(slot.offset..<(slot.offset + slot.count), with: try XCTUnwrap(file.floats(slot.name)))
        }
        try model.setParameters(flat)
        try model.setHeadIDs(ids)

        // Logits: the subset's columns as the reference's, -inf (q = 0) everywhere else.
        let logits = try model.logits(tokens: inputs, batch: batch, seqLen: seqLen)
        let reference = try XCTUnwrap(file.floats("logits"))
        let inSubset = Set(ids)
        var worstLogit: Float = 0
        for r in 0..<(batch * seqLen) {
            for (j, id) in ids.enumerated() {
                worstLogit = max(worstLogit, abs(logits[r * config.vocabSize + Int(id)] - reference[r * k + j]))
            }
            for v in 0..<config.vocabSize where !inSubset.contains(Int32(v)) {
                XCTAssertEqual(logits[r * config.vocabSize + v], -.infinity)
            }
        }
        XCTAssertLessThanOrEqual(worstLogit, 1e-5)

        let valid = labels.filter { $0 >= 0 }.count
        try model.zeroGradients()
        let result = try model.forwardBackward(tokens: inputs, targets: labels, batch: batch, seqLen: seqLen,
                                               lossScale: 1 / Float(valid - outside))
        XCTAssertEqual(result.targets, valid - outside, "targets inside the subset")
        XCTAssertEqual(model.lastOutsideHeadTargets, outside, "targets left out")
        let loss = result.lossSum / Double(result.targets)
        let referenceLoss = Double(try XCTUnwrap(file.floats("loss"))[0])
        XCTAssertLessThanOrEqual(abs(loss - referenceLoss) / referenceLoss, 1e-5, "loss \(loss) vs \(referenceLoss)")
        let gradients = try model.readGradients()
        var worst = 0.0
        for slot in model.layout.slots {
            let expected = try XCTUnwrap(file.floats("grad." + slot.name))
            let error = relativeError(Array(gradients[slot.offset..<(slot.offset + slot.count)]), expected)
            worst = max(worst, error)
            XCTAssertLessThanOrEqual(error, 1e-5, "gradient of \(slot.name)")
        }
        if !config.tieEmbeddings {
            // Rows of lm_head outside the subset take no gradient at all.
            let head = model.layout.head
            for v in 0..<config.vocabSize where !inSubset.contains(Int32(v)) {
                let row = gradients[(head.offset + v * config.dim)..<(head.offset + (v + 1) * config.dim)]
                XCTAssertTrue(row.allSatisfy { $0 == 0 }, "lm_head row \(v)")
            }
        }
        print("\(name): max |logit diff| \(worstLogit), loss rel diff \(abs(loss - referenceLoss) / referenceLoss), worst gradient rel err \(worst)")
    }

    func testHeadIDsAreChecked() throws {
        var config = ModelConfig(vocabSize: 16, dim: 8, layers: 1, heads: 2, kvHeads: 2, ffnDim: 16, maxSeqLen: 8)
        config.headVocab = 4
        let model = try LlamaModel(config: config, device: CPUDevice(threads: 1))
        XCTAssertThrowsError(try model.setHeadIDs([0, 1, 2]))
        XCTAssertThrowsError(try model.setHeadIDs([0, 2, 1, 3]))
        XCTAssertThrowsError(try model.setHeadIDs([0, 1, 2, 16]))
        // A subset model without ids refuses to run rather than scoring some default set.
        XCTAssertThrowsError(try model.logits(tokens: [1, 2], batch: 1, seqLen: 2))
        try model.setHeadIDs([0, 3, 5, 9])
        XCTAssertEqual(model.headIDs, [0, 3, 5, 9])
        config.headVocab = 17
        XCTAssertEqual(config.firstProblem()?.key, "head_vocab")
    }
}
