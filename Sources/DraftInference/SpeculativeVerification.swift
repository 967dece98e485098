import DraftModel

/// What one verification round decided: how many of the draft's proposals the target kept, and the one token the
/// target adds after them (the correction drawn at the first rejection, or the bonus token when all were kept).
public struct VerificationOutcome: Equatable, Sendable {
    /// Proposals kept, `0...gamma`; they are the first `accepted` proposals, in order.
    public var accepted: Int
    /// The token emitted after the kept proposals. A round always emits `accepted + 1` tokens.
    public var next: Int32
    /// Whether `next` is the bonus token (every proposal was kept) rather than a correction.
    public var isBonus: Bool

    public init(accepted: Int, next: Int32, isBonus: Bool) {
        self.accepted = accepted
        self.next = next
        self.isBonus = isBonus
    }
}

/// Exact speculative sampling (Leviathan, Kalman and Matias 2023; Chen et al. 2023).
///
/// The draft proposed `x_1 ... x_gamma`, each `x_i` drawn from its distribution `q_i`; the target scored the same
/// positions in one pass, giving `p_1 ... p_gamma` and `p_{gamma+1}` after the last proposal. For `i = 1, 2, ...`:
/// `x_i` is kept with probability `min(1, p_i(x_i) / q_i(x_i))`; at the first rejection a token is drawn from the
/// residual `norm(max(0, p_i - q_i))` and the round ends; when all `gamma` are kept a bonus token is drawn from
/// `p_{gamma+1}`. Every emitted token is then distributed exactly as the target alone would sample it: the kept mass
/// is `min(p, q)` and the residual supplies `p - min(p, q)`, so the sum is `p` whatever `q` is (the draft only changes
/// how many target passes it takes, never the output distribution).
///
/// Greedy decoding is the same rule with one-hot distributions (temperature 0): a proposal is kept iff it is the
/// target's argmax, and the correction is the target's argmax, so the output equals the target's greedy output token
/// for token. `GreedyVerifier` does that without building one-hot vectors.
///
/// Distributions are full-vocabulary probability rows (they need not sum exactly to 1; each is used as given, and the
/// residual is normalised by its own sum). A draft whose head covers only a subset of the vocabulary passes `q` with
/// zeros outside the subset: proposals never come from there, and the residual gives those tokens their whole `p`.
public enum SpeculativeVerifier {
    /// Decides one round. `draft[i]` is `q_{i+1}` and `target[i]` is `p_{i+1}`; `target` has at least one row more
    /// than `proposals` (row `proposals.count` is the bonus distribution; rows past the ones used are ignored).
    /// `uniform()` returns independent uniforms in (0, 1).
    public static func verify(proposals: [Int32], draft: [[Float]], target: [[Float]],
                              uniform: () -> Double) -> VerificationOutcome {
        for (i, token) in proposals.enumerated() {
            let t = Int(token)
            let p = Double(target[i][t]), q = Double(draft[i][t])
            // q > 0 for any token the draft actually sampled; a zero (a rounding underflow) keeps the token only if
            // the target wants it at all, which is the limit of min(1, p/q) as q -> 0.
            let keep = q > 0 ? uniform() < min(1, p / q) : p > 0
            if !keep {
                return VerificationOutcome(accepted: i, next: sampleResidual(target: target[i], draft: draft[i],
                                                                             uniform: uniform()), isBonus: false)
            }
        }
        let bonus = sample(target[proposals.count], uniform: uniform())
        return VerificationOutcome(accepted: proposals.count, next: bonus, isBonus: true)
    }

    /// A draw from `norm(max(0, p - q))`. When the residual has no mass (p <= q everywhere up to rounding, which only
    /// happens when p and q agree), the draw falls back to `p` itself, which is then the exact answer.
    static func sampleResidual(target p: [Float], draft q: [Float], uniform u: Double) -> Int32 {
        var total = 0.0
        for j in 0..<p.count { total += max(0, Double(p[j]) - Double(q[j])) }
        guard total > 0 else { return sample(p, uniform: u) }
        let threshold = u * total
        var running = 0.0, last = 0
        for j in 0..<p.count {
            let mass = max(0, Double(p[j]) - Double(q[j]))
            guard mass > 0 else { continue }
            running += mass
            last = j
            if running > threshold { return Int32(j) }
        }
        return Int32(last)
    }

    /// A draw from an unnormalised probability row by inversion.
    public static func sample<Row: RandomAccessCollection>(_ row: Row, uniform u: Double) -> Int32
    where Row.Element == Float, Row.Index == Int {
        var total = 0.0
        for value in row { total += Double(value) }
        let threshold = u * total
        var running = 0.0, last = 0
        for j in row.indices where row[j] > 0 {
            running += Double(row[j])
            last = j
            if running > threshold { return Int32(j) }
        }
        return Int32(last)
    }
}

/// The temperature-0 case of `SpeculativeVerifier`: keep proposals while they are the target's argmax; the token after
/// them is the target's argmax at the first disagreement (or after the last proposal). Ties go to the lowest id, as
/// plain greedy decoding breaks them, so both give the same output.
public enum GreedyVerifier {
    /// `targetArgmax[i]` is the target's argmax after `i` proposals (`proposals.count + 1` of them).
    public static func verify(proposals: [Int32], targetArgmax: [Int32]) -> VerificationOutcome {
        for (i, token) in proposals.enumerated() where token != targetArgmax[i] {
            return VerificationOutcome(accepted: i, next: targetArgmax[i], isBonus: false)
        }
        return VerificationOutcome(accepted: proposals.count, next: targetArgmax[proposals.count], isBonus: true)
    }
}
