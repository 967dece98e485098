import DraftDevice
import DraftModel
import XCTest

/// Central-difference check of the hand-written backward pass, independent of the PyTorch fixtures.
///
/// fp32 limits what can be asked: with step h = 2e-3 on a loss of about 3.5, rounding contributes about
/// 3.5 * 6e-8 / h ≈ 1e-4 per derivative and truncation O(h^2); entries are sampled where the analytic gradient is
/// largest in each tensor (plus random ones), and each tensor's sampled vector must agree to 2e-3 in relative L2 norm
/// (measured: at most about 2.3e-4 over all tensors, tied and untied).
final class FiniteDifferenceTests: XCTestCase {
    func testGradientsMatchCentralDifferences() throws {
        for tied in [true, false] {
            let config = ModelConfig(vocabSize: 40, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffnDim: 24,
                                     maxSeqLen: 16, tieEmbeddings: tied)
            let model = try LlamaModel(config: config, device: CPUDevice(threads: 1))
            var rng = SplitMix64(seed: 7)
            // Larger than the 0.02 initialisation so every path (attention included) carries real signal.
            var parameters = model.layout.slots.flatMap { slot in
                (0..<slot.count).map { _ in Float(slot.decays ? 0.3 * rng.nextNormal() : 1 + 0.2 * rng.nextNormal()) }
            }
            try model.setParameters(parameters)
            let batch = 2, seqLen = 8
            let tokens = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % 40) }
            var targets = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % 40) }
            targets[3] = -1
            let count = targets.filter { $0 >= 0 }.count
            func loss() throws -> Double {
                try model.evaluate(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen).lossSum / Double(count)
            }
            try model.zeroGradients()
            try model.forwardBackward(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen,
                                      lossScale: 1 / Float(count))
            let analytic = try model.readGradients()
            for (name, numeric, exact) in try sampledCentralDifferences(model, parameters: &parameters, analytic: analytic,
                                                                        rng: &rng, value: loss) {
                XCTAssertLessThanOrEqual(relativeError(numeric, exact), 2e-3,
                                         "\(name) (tied: \(tied)): numeric \(numeric) analytic \(exact)")
            }
        }
    }
}

/// Central differences (h = 2e-3) of `value` at the 4 largest-gradient and 2 random parameters of every tensor, beside
/// the analytic gradient there, per tensor; `parameters` (the model's current values) are restored in the model.
func sampledCentralDifferences(_ model: LlamaModel, parameters: inout [Float], analytic: [Float], rng: inout SplitMix64,
                               value: () throws -> Double) throws -> [(name: String, numeric: [Float], exact: [Float])] {
    let h: Float = 2e-3
    var result: [(name: String, numeric: [Float], exact: [Float])] = []
    for slot in model.layout.slots {
        let range = slot.offset..<(slot.offset + slot.count)
        let largest = range.sorted { abs(analytic[$0]) > abs(analytic[$1]) }.prefix(4)
        let sampled = Array(largest) + (0..<2).map { _ in range.lowerBound + Int(rng.next() % UInt64(slot.count)) }
        var numeric: [Float] = [], exact: [Float] = []
        for i in sampled {
            let original = parameters[i]
            parameters[i] = original + h
            try model.setParameters(parameters)
            let plus = try value()
            parameters[i] = original - h
            try model.setParameters(parameters)
            let minus = try value()
            parameters[i] = original
            numeric.append(Float((plus - minus) / Double(2 * h)))
            exact.append(analytic[i])
        }
        try model.setParameters(parameters)
        result.append((slot.name, numeric, exact))
    }
    return result
}
