import DraftTraining
import Foundation
import XCTest

/// The four schedules against their formulas: linear warmup, then cosine / linear / constant / wsd to min_lr, scaled
/// per stage.
final class LearningRateScheduleTests: XCTestCase {
    private func config(kind: String, decayFraction: Double = 0.2) throws -> TrainingConfig {
        try TrainingConfig.parse(yaml: """
            model: {vocab_size: 300, dim: 16, layers: 1, heads: 2, ffn_dim: 32, max_seq_len: 16}
            data: {seq_len: 16, sources: {a: {path: unused}}}
            schedule:
              global_batch_tokens: 1008
              micro_batch: 1
              stages: [{name: one, tokens: 60000, mixture: {a: 1}}, {name: two, tokens: 40000, mixture: {a: 1}, lr_scale: 0.5}]
            optimizer: {lr: 1.0e-3, min_lr: 1.0e-4}
            lr_schedule: {kind: \(kind), warmup_tokens: 4000, decay_fraction: \(decayFraction)}
            """, source: "test")
    }

    func testSchedules() throws {
        // 1008 tokens per step; stages of round(60000/1008) = 60 and round(40000/1008) = 40 steps.
        let cosine = LearningRateSchedule(config: try config(kind: "cosine"))
        XCTAssertEqual(cosine.config.stepsPerStage, [60, 40])
        let total = 100.0 * 1008, warmup = 4000.0
        XCTAssertEqual(cosine.rate(step: 0), 1e-3 * 1008 / 4000, accuracy: 1e-12, "warmup counts this step's tokens")
        XCTAssertEqual(cosine.rate(step: 2), 1e-3 * 3 * 1008 / 4000, accuracy: 1e-12)
        func progress(_ step: Int) -> Double { (Double(step) * 1008 - warmup) / (total - warmup) }
        XCTAssertEqual(cosine.rate(step: 30), 1e-4 + 0.45e-3 * (1 + cos(.pi * progress(30))), accuracy: 1e-12)
        XCTAssertEqual(cosine.rate(step: 70), 0.5 * (1e-4 + 0.45e-3 * (1 + cos(.pi * progress(70)))), accuracy: 1e-12,
                       "stage two scales by lr_scale 0.5")
        let linear = LearningRateSchedule(config: try config(kind: "linear"))
        XCTAssertEqual(linear.rate(step: 30), 1e-3 - 0.9e-3 * progress(30), accuracy: 1e-12)
        let constant = LearningRateSchedule(config: try config(kind: "constant"))
        XCTAssertEqual(constant.rate(step: 50), 1e-3, accuracy: 1e-15)
        let wsd = LearningRateSchedule(config: try config(kind: "wsd", decayFraction: 0.25))
        XCTAssertEqual(wsd.rate(step: 40), 1e-3, accuracy: 1e-15, "stable until the last quarter")
        XCTAssertEqual(wsd.rate(step: 90), 0.5 * (1e-3 - 0.9e-3 * (progress(90) - 0.75) / 0.25), accuracy: 1e-12)
        // Every schedule ends at min_lr (times the last stage's scale) and never goes below it.
        for schedule in [cosine, linear, wsd] {
            XCTAssertGreaterThanOrEqual(schedule.rate(step: 99), 0.5 * 1e-4 - 1e-15)
            XCTAssertEqual(schedule.rate(step: 100), 0.5 * 1e-4, accuracy: 1e-12)
        }
    }
}
