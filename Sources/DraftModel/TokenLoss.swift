import DraftDevice

/// The loss the LM head takes per target token: cross-entropy on the data token, or a token-level distillation
/// loss against the teacher's top-K (see `Device.distillationLossForwardBackward` for the definitions).
public enum TokenLoss: Equatable, Sendable {
    /// `ce`: cross-entropy on the data token.
    case crossEntropy
    /// `(1 - kdWeight) ce + kdWeight divergence` on rows with a teacher row, `ce` on rows without one. `kl` and `tvd`
    /// are `kdWeight` 1; `ce_kl` is `.kl` with the stage's weight.
    case distillation(Divergence, kdWeight: Float)
}

/// The teacher's top-K for a micro-batch, row-aligned with its targets: `ids` and `logprobs` are `(N, k)`, and a
/// row whose ids are all -1 has no teacher (raw text mixed into a KD stage), so it takes the cross-entropy.
public struct TeacherRows: Sendable {
    public let k: Int
    public var ids: [Int32]
    public var logprobs: [Float]

    public init(k: Int, ids: [Int32], logprobs: [Float]) {
        self.k = k
        self.ids = ids
        self.logprobs = logprobs
    }

    /// `rows` rows without a teacher.
    public init(k: Int, rows: Int) {
        self.init(k: k, ids: [Int32](repeating: -1, count: rows * k), logprobs: [Float](repeating: 0, count: rows * k))
    }
}

/// What one forward-backward's loss added up to (unscaled sums, so ranks and micro-batches add them).
public struct LossSums: Sendable {
    /// The loss that was differentiated, summed over target rows.
    public var loss = 0.0
    /// Rows with a target (the loss's denominator).
    public var targets = 0
    /// Cross-entropy on the data token, summed over target rows (equal to `loss` under `.crossEntropy`).
    public var crossEntropy = 0.0
    /// The distillation divergence, summed over target rows with a teacher row.
    public var divergence = 0.0
    /// Target rows with a teacher row (the divergence's denominator).
    public var teacherRows = 0

    public init() {}
}
