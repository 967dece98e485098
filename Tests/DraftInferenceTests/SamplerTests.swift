import DraftInference
import DraftModel
import XCTest

final class SamplerTests: XCTestCase {
    private func draw(_ logits: [Float], _ parameters: SamplingParameters, count: Int) -> (counts: [Int], last: [Float]) {
        var sampler = Sampler(parameters)
        var probabilities = [Float](repeating: -1, count: logits.count)
        var counts = [Int](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { logits in
            probabilities.withUnsafeMutableBufferPointer { p in
                for _ in 0..<count { counts[Int(sampler.sample(logits: logits, probabilities: p))] += 1 }
            }
        }
        return (counts, probabilities)
    }

    /// softmax(logits / T), top-k, then top-p, by sorting everything in double precision.
    private func bruteForce(_ logits: [Float], _ p: SamplingParameters) -> [Double] {
        let m = Double(logits.max()!)
        var probabilities = logits.map { exp((Double($0) - m) / Double(p.temperature)) }
        let order = probabilities.indices.sorted { probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1 }
        var kept = p.topK > 0 ? Array(order.prefix(p.topK)) : order
        let mass = kept.reduce(0) { $0 + probabilities[$1] }
        var cumulative = 0.0
        for (i, id) in kept.enumerated() {
            cumulative += probabilities[id]
            if cumulative >= Double(p.topP) * mass { kept = Array(kept.prefix(i + 1)); break }
        }
        let keptMass = kept.reduce(0) { $0 + probabilities[$1] }
        let keep = Set(kept)
        for i in probabilities.indices { probabilities[i] = keep.contains(i) ? probabilities[i] / keptMass : 0 }
        return probabilities
    }

    func testGreedyIsArgmaxWithAOneHotDistribution() {
        let logits: [Float] = [0.5, 3, -1, 3, 2]
        let (counts, probabilities) = draw(logits, SamplingParameters(temperature: 0), count: 10)
        XCTAssertEqual(counts, [0, 10, 0, 0, 0])  // the first of the tied maxima
        XCTAssertEqual(probabilities, [0, 1, 0, 0, 0])
    }

    func testTemperatureSamplingFollowsTheSoftmax() {
        let logits: [Float] = [1, 2, 0.5, -1, 1.5]
        let parameters = SamplingParameters(temperature: 0.8, seed: 42)
        let n = 40_000
        let (counts, probabilities) = draw(logits, parameters, count: n)
        let expected = bruteForce(logits, parameters)
        for i in logits.indices {
            XCTAssertEqual(Double(probabilities[i]), expected[i], accuracy: 1e-6)
            // Four standard deviations of a binomial count.
            let sd = (Double(n) * expected[i] * (1 - expected[i])).squareRoot()
            XCTAssertEqual(Double(counts[i]), Double(n) * expected[i], accuracy: 4 * sd, "token \(i)")
        }
    }

    func testTopKAndTopPKeepExactlyTheNucleus() {
        var rng = SplitMix64(seed: 5)
        let logits = (0..<49_152).map { _ in Float(rng.nextNormal() * 3) }
        for parameters in [SamplingParameters(temperature: 1, topK: 40, seed: 1),
                           SamplingParameters(temperature: 0.7, topP: 0.9, seed: 2),
                           SamplingParameters(temperature: 1.2, topK: 500, topP: 0.5, seed: 3)] {
            let (counts, probabilities) = draw(logits, parameters, count: 300)
            let expected = bruteForce(logits, parameters)
            var keptExpected = 0, keptActual = 0
            for i in logits.indices {
                if expected[i] > 0 { keptExpected += 1 }
                if probabilities[i] > 0 { keptActual += 1 }
                XCTAssertEqual(Double(probabilities[i]), expected[i], accuracy: 1e-5)
                if expected[i] == 0 { XCTAssertEqual(counts[i], 0, "token \(i) outside the nucleus was drawn") }
            }
            XCTAssertEqual(keptActual, keptExpected, "\(parameters)")
            XCTAssertGreaterThan(keptExpected, 1)
        }
    }

    func testTheSameSeedDrawsTheSameTokens() {
        let logits: [Float] = (0..<100).map { Float($0 % 7) * 0.3 }
        let a = draw(logits, SamplingParameters(temperature: 1, topP: 0.95, seed: 9), count: 200).counts
        let b = draw(logits, SamplingParameters(temperature: 1, topP: 0.95, seed: 9), count: 200).counts
        let c = draw(logits, SamplingParameters(temperature: 1, topP: 0.95, seed: 10), count: 200).counts
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }
}
