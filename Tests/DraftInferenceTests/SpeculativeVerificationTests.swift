import DraftDevice
import DraftInference
import DraftModel
import XCTest

/// Losslessness of the acceptance rule, checked on a small model pair whose exact output distribution is known: the
/// target and the draft are random first-order Markov chains over a 6-token vocabulary, and the speculative sampler
/// must produce the target chain's distribution of the first two emitted tokens, cell for cell (a chi-square test).
/// A deliberately broken rule must fail the same test, or it would prove nothing.
final class SpeculativeVerificationTests: XCTestCase {
    static let vocab = 6, gamma = 3

    /// Row `prev` is the distribution of the next token after `prev`.
    struct MarkovChain {
        var rows: [[Float]]

        init(vocab: Int, seed: UInt64, sharpness: Double) {
            var rng = SplitMix64(seed: seed)
            rows = (0..<vocab).map { _ in
                let logits = (0..<vocab).map { _ in sharpness * rng.nextNormal() }
                let m = logits.max()!
                let e = logits.map { exp($0 - m) }
                let s = e.reduce(0, +)
                return e.map { Float($0 / s) }
            }
        }
    }

    enum Rule { case exact, acceptByInverseRatio, resampleFromTarget }

    /// One speculative round from `prev` with either the exact rule or a broken one; returns the emitted tokens.
    func round(prev: Int32, target: MarkovChain, draft: MarkovChain, rule: Rule,
               rng: inout SplitMix64) -> [Int32] {
        var proposals: [Int32] = []
        var last = prev
        for _ in 0..<Self.gamma {
            let next = draft.rows[Int(last)].withUnsafeBufferPointer {
                SpeculativeVerifier.sample($0, uniform: rng.nextUnitInterval())
            }
            proposals.append(next)
            last = next
        }
        let contexts = [prev] + proposals
        let q = (0..<Self.gamma).map { draft.rows[Int(contexts[$0])] }
        let p = (0...Self.gamma).map { target.rows[Int(contexts[$0])] }
        switch rule {
        case .exact:
            let outcome = SpeculativeVerifier.verify(proposals: proposals, draft: q, target: p,
                                                     uniform: { rng.nextUnitInterval() })
            return Array(proposals.prefix(outcome.accepted)) + [outcome.next]
        case .acceptByInverseRatio, .resampleFromTarget:
            for i in 0..<Self.gamma {
                let x = Int(proposals[i])
                let ratio = rule == .acceptByInverseRatio ? Double(q[i][x] / p[i][x]) : Double(p[i][x] / q[i][x])
                if rng.nextUnitInterval() >= min(1, ratio) {
                    let correction: Int32
                    if rule == .resampleFromTarget {
                        correction = p[i].withUnsafeBufferPointer {
                            SpeculativeVerifier.sample($0, uniform: rng.nextUnitInterval())
                        }
                    } else {
                        let residual = zip(p[i], q[i]).map { max(0, $0 - $1) }
                        correction = residual.withUnsafeBufferPointer {
                            SpeculativeVerifier.sample($0, uniform: rng.nextUnitInterval())
                        }
                    }
                    return Array(proposals.prefix(i)) + [correction]
                }
            }
            return proposals + [p[Self.gamma].withUnsafeBufferPointer {
                SpeculativeVerifier.sample($0, uniform: rng.nextUnitInterval())
            }]
        }
    }

    /// Chi-square statistic and its p-value for the first two tokens emitted from token 0, over `samples` runs.
    func chiSquare(rule: Rule, samples: Int, seed: UInt64) -> (statistic: Double, pValue: Double, acceptance: Double) {
        let target = MarkovChain(vocab: Self.vocab, seed: 11, sharpness: 1.2)
        let draft = MarkovChain(vocab: Self.vocab, seed: 29, sharpness: 1.2)
        var rng = SplitMix64(seed: seed)
        var counts = [Int](repeating: 0, count: Self.vocab * Self.vocab)
        var proposed = 0, accepted = 0
        for _ in 0..<samples {
            var emitted: [Int32] = []
            var prev: Int32 = 0
            while emitted.count < 2 {
                let tokens = round(prev: prev, target: target, draft: draft, rule: rule, rng: &rng)
                proposed += Self.gamma
                accepted += tokens.count - 1
                emitted += tokens
                prev = tokens.last!
            }
            counts[Int(emitted[0]) * Self.vocab + Int(emitted[1])] += 1
        }
        var statistic = 0.0
        for a in 0..<Self.vocab {
            for b in 0..<Self.vocab {
                let expected = Double(samples) * Double(target.rows[0][a]) * Double(target.rows[a][b])
                let observed = Double(counts[a * Self.vocab + b])
                statistic += (observed - expected) * (observed - expected) / expected
            }
        }
        let df = Double(Self.vocab * Self.vocab - 1)
        return (statistic, ChiSquare.survival(statistic, degreesOfFreedom: df), Double(accepted) / Double(proposed))
    }

    func testSampledOutputHasTheTargetDistribution() {
        let exact = chiSquare(rule: .exact, samples: 200_000, seed: 7)
        print(String(format: "exact rule: chi2 %.1f (df 35), p-value %.3f, acceptance %.3f",
                     exact.statistic, exact.pValue, exact.acceptance))
        XCTAssertGreaterThan(exact.pValue, 1e-3, "the exact rule's output is not the target's distribution")
        // The draft differs from the target, so some proposals must be rejected: the rule is being exercised.
        XCTAssertLessThan(exact.acceptance, 0.9)
        XCTAssertGreaterThan(exact.acceptance, 0.1)
    }

    func testBrokenRulesFailTheSameTest() {
        for rule in [Rule.acceptByInverseRatio, .resampleFromTarget] {
            let broken = chiSquare(rule: rule, samples: 200_000, seed: 7)
            print(String(format: "%@: chi2 %.1f, p-value %.2e", "\(rule)", broken.statistic, broken.pValue))
            XCTAssertLessThan(broken.pValue, 1e-6, "\(rule) passed the chi-square test; the test has no power")
        }
    }

    func testTargetAsItsOwnDraftKeepsEveryProposal() {
        let chain = MarkovChain(vocab: Self.vocab, seed: 11, sharpness: 1.2)
        var rng = SplitMix64(seed: 3)
        var proposed = 0, accepted = 0
        for _ in 0..<5_000 {
            let tokens = round(prev: 0, target: chain, draft: chain, rule: .exact, rng: &rng)
            proposed += Self.gamma
            accepted += tokens.count - 1
        }
        XCTAssertEqual(accepted, proposed, "p == q must accept every proposal")
    }

    func testGreedyVerifierKeepsTheTargetsArgmax() {
        XCTAssertEqual(GreedyVerifier.verify(proposals: [4, 2, 9], targetArgmax: [4, 2, 9, 1]),
                       VerificationOutcome(accepted: 3, next: 1, isBonus: true))
        XCTAssertEqual(GreedyVerifier.verify(proposals: [4, 2, 9], targetArgmax: [4, 7, 9, 1]),
                       VerificationOutcome(accepted: 1, next: 7, isBonus: false))
        XCTAssertEqual(GreedyVerifier.verify(proposals: [4, 2, 9], targetArgmax: [5, 2, 9, 1]),
                       VerificationOutcome(accepted: 0, next: 5, isBonus: false))
    }

    func testChiSquareSurvivalAgainstKnownQuantiles() {
        // Upper-tail quantiles of the chi-square distribution (standard tables).
        XCTAssertEqual(ChiSquare.survival(3.841, degreesOfFreedom: 1), 0.05, accuracy: 1e-4)
        XCTAssertEqual(ChiSquare.survival(49.802, degreesOfFreedom: 35), 0.05, accuracy: 1e-4)
        XCTAssertEqual(ChiSquare.survival(66.619, degreesOfFreedom: 35), 0.001, accuracy: 2e-5)
        XCTAssertEqual(ChiSquare.survival(0, degreesOfFreedom: 10), 1, accuracy: 1e-12)
    }
}

/// The chi-square upper tail `Q(df/2, x/2)` (regularised upper incomplete gamma): a series below `a + 1`, a
/// continued fraction (modified Lentz) above.
enum ChiSquare {
    /// Pearson's statistic of observed `counts` against `samples` draws from `probabilities`, with the cells expected
    /// fewer than 5 times pooled into one; and its p-value.
    static func pooledTest(counts: [Int], probabilities: [Double], samples: Int) -> (statistic: Double, cells: Int, pValue: Double) {
        var statistic = 0.0, cells = 0, pooledObserved = 0.0, pooledExpected = 0.0
        for (count, probability) in zip(counts, probabilities) {
            let e = probability * Double(samples), o = Double(count)
            if e < 5 {
                pooledObserved += o
                pooledExpected += e
                continue
            }
            statistic += (o - e) * (o - e) / e
            cells += 1
        }
        if pooledExpected > 0 {
            statistic += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / pooledExpected
            cells += 1
        }
        return (statistic, cells, survival(statistic, degreesOfFreedom: Double(cells - 1)))
    }

    /// The exact joint distribution of the next two tokens after `prompt` from `target`'s own logits at `temperature`
    /// (`vocab * vocab` probabilities, first token major).
    static func targetPairs(_ target: DecoderEngine, device: any Device, prompt: [Int32], vocab: Int,
                            temperature: Float) throws -> [Double] {
        func distribution(_ context: [Int32]) throws -> [Double] {
            let cache = try KVCache(config: target.config, device: device, slotCount: 1, capacity: context.count + 1)
            let logits = try target.forward([SequenceChunk(slot: 0, tokens: context, start: 0)], cache: cache, select: .lastRow)
            let row = Array(logits.row(0)).map { Double($0 / temperature) }
            let m = row.max()!
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        }
        let first = try distribution(prompt)
        var expected = [Double]()
        for a in 0..<vocab { expected += try distribution(prompt + [Int32(a)]).map { first[a] * $0 } }
        return expected
    }

    /// The joint distribution of the first two tokens a speculative decoder emits after `prompt` (over a vocabulary of
    /// `vocab`), tested against `expected` (`vocab * vocab` probabilities) over `samples` seeded runs.
    static func speculativePairs(_ decoder: SpeculativeDecoder, prompt: [Int32], vocab: Int, expected: [Double],
                                 samples: Int, seedOffset: UInt64) throws -> (statistic: Double, cells: Int, pValue: Double, counts: SpeculationCounts) {
        var pairs = [Int](repeating: 0, count: vocab * vocab)
        var totals = SpeculationCounts(gamma: decoder.gamma)
        for i in 0..<samples {
            let run = try decoder.generate(prompt: prompt, maxNewTokens: 4, stopTokens: [], seed: UInt64(i) &* 7919 &+ seedOffset)
            pairs[Int(run.outputIDs[0]) * vocab + Int(run.outputIDs[1])] += 1
            totals = totals + run.counts
        }
        let test = pooledTest(counts: pairs, probabilities: expected, samples: samples)
        return (test.statistic, test.cells, test.pValue, totals)
    }

    static func survival(_ x: Double, degreesOfFreedom df: Double) -> Double {
        guard x > 0 else { return 1 }
        let a = df / 2, z = x / 2
        let logPrefix = a * log(z) - z - lgamma(a)
        if z < a + 1 {
            var term = 1 / a, sum = term, n = a
            for _ in 0..<10_000 {
                n += 1
                term *= z / n
                sum += term
                if abs(term) < abs(sum) * 1e-15 { break }
            }
            return max(0, 1 - sum * exp(logPrefix))
        }
        let tiny = 1e-300
        var b = z + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1..<10_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-15 { break }
        }
        return exp(logPrefix) * h
    }
}
