import DraftInference
import XCTest

final class SpeculationReportTests: XCTestCase {
    func testFiguresFollowTheirDefinitions() {
        var counts = SpeculationCounts(gamma: 3)
        counts.proposed = 30
        counts.accepted = 15
        counts.emitted = 25
        counts.targetPasses = 10
        counts.proposedAt = [10, 10, 10]
        counts.acceptedAt = [7, 5, 3]
        counts.draftSeconds = 0.3
        counts.draftPrefillSeconds = 0.1
        counts.draftSteps = 25
        counts.targetSeconds = 0.95
        counts.prefillSeconds = 0.25
        let r = SpeculationReport(prompts: 2, gamma: 3, counts: counts, plainTokens: 25, plainSeconds: 2.5,
                                  plainPrefillSeconds: 0.2, specTokens: 25, specSeconds: 1.25, parameterRatio: 0.1,
                                  byteRatio: 0.05)
        XCTAssertEqual(r.acceptanceRate, 0.5)
        XCTAssertEqual(r.tau, 2.5)
        XCTAssertEqual(counts.perPosition, [0.7, 0.5, 0.3])
        XCTAssertEqual(r.mbsu, 2.5 / 1.3, accuracy: 1e-12)
        XCTAssertEqual(r.mbsuBytes, 2.5 / 1.15, accuracy: 1e-12)
        XCTAssertEqual(r.speedup, 2, accuracy: 1e-12)
        // One draft step (0.3 - 0.1) / 25 = 0.008 s against one plain decode step 0.1 s (below: 2.3 s for 23 tokens).
        XCTAssertEqual(r.draftStepSeconds, 0.008, accuracy: 1e-12)
        XCTAssertEqual(r.measuredCostRatio, 0.08, accuracy: 1e-12)
        // Prefill left out: plain 23 tokens after the 2 prompts' first in 2.3 s, speculative 25 in 1.0 s.
        XCTAssertEqual(r.decodeTokensPerSecondPlain, 10, accuracy: 1e-12)
        XCTAssertEqual(r.decodeTokensPerSecondSpec, 25, accuracy: 1e-12)
        XCTAssertEqual(r.decodeSpeedup, 2.5, accuracy: 1e-12)
        // 10 passes in 0.95 - 0.25 s: 0.07 s each, 0.7 of a 0.1 s plain step.
        XCTAssertEqual(r.passSeconds, 0.07, accuracy: 1e-12)
        XCTAssertEqual(r.passCostSteps, 0.7, accuracy: 1e-12)
        XCTAssertEqual(r.json["decode_speedup"] as? Double ?? 0, 2.5, accuracy: 1e-12)
    }

    func testBreakEvenAcceptance() throws {
        // tau(a) = 1 + a + a^2 + a^3 must reach 3c + 1.
        let a = try XCTUnwrap(SpeculationReport.breakEven(gamma: 3, costRatio: 0.1))
        XCTAssertEqual(a + a * a + a * a * a, 0.3, accuracy: 1e-9)
        XCTAssertEqual(SpeculationReport.breakEven(gamma: 3, costRatio: 0) ?? -1, 0, accuracy: 1e-9)
        XCTAssertNil(SpeculationReport.breakEven(gamma: 3, costRatio: 1.0), "a draft as slow as the target never pays")
        // A verification pass of 1.5 plain steps: tau must reach 3c + 1.5.
        let measured = try XCTUnwrap(SpeculationReport.breakEven(gamma: 3, costRatio: 0.1, passCost: 1.5))
        XCTAssertEqual(measured + measured * measured + measured * measured * measured, 0.8, accuracy: 1e-9)
        XCTAssertNil(SpeculationReport.breakEven(gamma: 3, costRatio: 0.5, passCost: 2.5), "3c + pass = 4 = tau(1)")
    }
}
