import DraftDevice
import DraftErrors
import DraftModel
import Foundation

/// How the next token is chosen: temperature 0 is greedy; otherwise softmax of `logits / temperature`, cut to the
/// `topK` most likely tokens (0: no cut), then to the smallest set whose mass reaches `topP` (1: no cut), renormalised.
/// The cuts are applied in that order, as Hugging Face's `TopKLogitsWarper` then `TopPLogitsWarper` do.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    /// The first value out of range, as a one-line message naming the option.
    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else {
            throw InputError("--temperature: expected a number >= 0, got \(temperature)")
        }
        guard topK >= 0 else { throw InputError("--top-k: expected an integer >= 0 (0 = off), got \(topK)") }
        guard topP > 0, topP <= 1 else { throw InputError("--top-p: expected a number in (0, 1], got \(topP)") }
    }
}

/// A seeded sampler over one sequence's logits. It returns the distribution it sampled from too (zero outside the
/// kept tokens; one-hot when greedy), which speculative sampling needs to accept or correct a draft's token.
///
/// The random stream depends only on the seed and the number of draws, so a sequence's tokens do not depend on what
/// else runs in its batch. Scratch is sized once per vocabulary: sampling allocates nothing per token.
public struct Sampler {
    public let parameters: SamplingParameters
    private var rng: SplitMix64
    private var candidates: [Int32] = []

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// The next token from `logits`; `probabilities` (the vocabulary's length) receives the distribution drawn from.
    public mutating func sample(logits: UnsafeBufferPointer<Float>,
                                probabilities: UnsafeMutableBufferPointer<Float>) -> Int32 {
        let vocab = logits.count
        if parameters.temperature == 0 {
            let best = argmax(logits)
            probabilities.update(repeating: 0)
            probabilities[best] = 1
            return Int32(best)
        }
        // softmax(logits / T) into `probabilities`, vectorised; its sum in double (49k float additions in a row drift
        // by 1e-3, enough to move the top-p cut by a few tokens).
        guard let logitBase = logits.baseAddress, let base = probabilities.baseAddress,
              let total = softmaxNumerators(logitBase, count: vocab, scale: 1 / parameters.temperature, into: base),
              total > 0 else {
            // No finite logit: nothing to draw from but the first id (as argmax does).
            probabilities.update(repeating: 0)
            if vocab > 0 { probabilities[0] = 1 }
            return 0
        }
        let k = parameters.topK > 0 && parameters.topK < vocab ? parameters.topK : 0
        let p = parameters.topP
        if k == 0 && p >= 1 {
            scaleInPlace(base, length: vocab, by: Float(1 / total))
            return draw(probabilities, mass: 1)
        }
        keepNucleus(probabilities, total: total, topK: k, topP: p)
        return draw(probabilities, mass: 1)
    }

    /// Zeroes everything outside the top-k / top-p set and renormalises what is left.
    ///
    /// Sorting the whole vocabulary per token would cost more than a draft's forward, so only candidates above a
    /// threshold are sorted: if they hold at least `k` tokens (with top-k) or a mass of at least `topP` (without), the kept set (a prefix of
    /// the sorted order) lies among them, so the result is exact. The threshold drops by 1000x until that holds
    /// (with top-k: until there are `k`, since the top-p share is then taken of the top-k mass).
    private mutating func keepNucleus(_ probabilities: UnsafeMutableBufferPointer<Float>, total: Double, topK k: Int,
                                      topP p: Float) {
        let vocab = probabilities.count
        var largest: Float = 0
        for value in probabilities where value > largest { largest = value }
        var threshold = largest * 1e-3
        while true {
            candidates.removeAll(keepingCapacity: true)
            var mass: Double = 0
            for i in 0..<vocab where probabilities[i] >= threshold {
                candidates.append(Int32(i))
                mass += Double(probabilities[i])
            }
            if (k > 0 ? candidates.count >= k : mass >= Double(p) * total) || threshold == 0 { break }
            threshold = threshold < 1e-30 ? 0 : threshold * 1e-3
        }
        // Highest probability first; ties by lower id, so the kept set is deterministic.
        candidates.sort { a, b in
            let pa = probabilities[Int(a)], pb = probabilities[Int(b)]
            return pa != pb ? pa > pb : a < b
        }
        var kept = k > 0 ? min(k, candidates.count) : candidates.count
        if p < 1 {
            // The nucleus is a share of the top-k mass, or of the whole vocabulary's without top-k.
            var keptMass = total
            if k > 0 {
                keptMass = 0
                for i in 0..<kept { keptMass += Double(probabilities[Int(candidates[i])]) }
            }
            var cumulative: Double = 0
            var cut = kept
            for i in 0..<kept {
                cumulative += Double(probabilities[Int(candidates[i])])
                if cumulative >= Double(p) * keptMass {
                    cut = i + 1
                    break
                }
            }
            kept = cut
        }
        var keptMass: Double = 0
        for i in 0..<kept { keptMass += Double(probabilities[Int(candidates[i])]) }
        let values = candidates[0..<kept].map { Float(Double(probabilities[Int($0)]) / keptMass) }
        probabilities.update(repeating: 0)
        for (i, id) in candidates[0..<kept].enumerated() { probabilities[Int(id)] = values[i] }
    }

    /// A token drawn from a normalised distribution (inverse CDF over one uniform number).
    private mutating func draw(_ probabilities: UnsafeMutableBufferPointer<Float>, mass: Float) -> Int32 {
        let u = Float(rng.nextUnitInterval()) * mass
        var cumulative: Float = 0
        var last = 0
        for i in 0..<probabilities.count where probabilities[i] > 0 {
            cumulative += probabilities[i]
            last = i
            if u < cumulative { return Int32(i) }
        }
        // Rounding left u just above the total: the last token with mass.
        return Int32(last)
    }
}

/// Index of the largest value (the first on ties, as `torch.argmax` and llama.cpp's greedy sampler).
public func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
    var best = 0
    var bestValue = -Float.infinity
    for i in 0..<values.count where values[i] > bestValue {
        bestValue = values[i]
        best = i
    }
    return best
}
