import Foundation
import XCTest

/// `schedule.stages[].loss`: bad kinds and weights, and a distillation kind over sources without the target's top-K,
/// are bad input naming the stage's key (exit 2, one line, nothing written); `ce` spelled out trains.
extension ConfigBadInputTests {
    func testStageLossKindMustBeKnown() throws {
        try expectBadInput(config(stage: ", loss: {kind: js}"), naming: "schedule.stages[0].loss.kind")
        try expectBadInput(config(stage: ", loss: {kind: kl, weight: 0.3}"), naming: "schedule.stages[0].loss.weight")
    }

    func testKDWeightOnlyWithCEKLAndInTheUnitInterval() throws {
        try expectBadInput(config(stage: ", loss: {kind: kl, kd_weight: 0.3}"), naming: "schedule.stages[0].loss.kd_weight")
        try expectBadInput(config(stage: ", loss: {kind: ce, kd_weight: 0.3}"), naming: "schedule.stages[0].loss.kd_weight")
        try expectBadInput(config(stage: ", loss: {kind: ce_kl, kd_weight: 1.5}"), naming: "schedule.stages[0].loss.kd_weight")
        try expectBadInput(config(stage: ", loss: {kind: ce_kl, kd_weight: -0.1}"), naming: "schedule.stages[0].loss.kd_weight")
    }

    func testDistillationKindNeedsASourceWithTeacherTopK() throws {
        for kind in ["kl", "tvd", "ce_kl"] {
            try expectBadInput(config(stage: ", loss: {kind: \(kind)}"), naming: "schedule.stages[0].loss.kind")
        }
    }

    func testCrossEntropySpelledOutTrains() throws {
        let path = work.appendingPathComponent("config.yaml")
        try config(stage: ", loss: {kind: ce}").write(to: path, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", path.path, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
