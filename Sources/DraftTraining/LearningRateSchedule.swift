import Foundation

/// The learning rate at each optimizer step: linear warmup, then `cosine`, `linear`, `constant` or `wsd`
/// (warmup-stable-decay: constant, then a linear decay over the last `decay_fraction` of the run), each ending at
/// `min_lr`, and scaled by the current stage's `lr_scale`.
public struct LearningRateSchedule: Sendable {
    public let config: TrainingConfig

    public init(config: TrainingConfig) { self.config = config }

    /// The rate for global step `step` (0-based). Schedules run over tokens so they do not change when the batch size does.
    public func rate(step: Int) -> Double {
        let o = config.optimizer, s = config.lrSchedule
        let batch = Double(config.schedule.globalBatchTokens)
        let total = Double(config.totalSteps) * batch
        let seen = Double(step) * batch
        let stageScale = config.schedule.stages[config.stage(ofStep: step)].lrScale ?? 1
        if seen < s.warmupTokens {
            // The first step already gets a non-zero rate: warmup counts the tokens this step will have seen.
            return o.lr * min(1, (seen + batch) / s.warmupTokens) * stageScale
        }
        let progress = total > s.warmupTokens ? min(1, max(0, (seen - s.warmupTokens) / (total - s.warmupTokens))) : 1
        let rate: Double
        switch s.kind {
        case "linear":
            rate = o.lr - (o.lr - o.minLR) * progress
        case "constant":
            rate = o.lr
        case "wsd":
            let decayStart = 1 - s.decayFraction
            rate = progress <= decayStart ? o.lr : o.lr - (o.lr - o.minLR) * (progress - decayStart) / s.decayFraction
        default:  // cosine
            rate = o.minLR + 0.5 * (o.lr - o.minLR) * (1 + cos(Double.pi * progress))
        }
        return rate * stageScale
    }
}
