import DraftTraining
import Foundation
import XCTest

/// `plan` against hand arithmetic for the 24-hour, 10B-token FastDraft schedule on 8 devices.
final class PlanTests: XCTestCase {
    private var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func testPhi3DraftArithmetic() throws {
        let config = try TrainingConfig.load(path: repository.appendingPathComponent("configs/phi3-mini-draft-50m.yaml").path,
                                             requireData: false)
        let plan = TrainingPlan(config: config, devices: 8, tokensPerSecond: 20_000, deviceMemoryBytes: 96_000_000_000)
        // Embedding 32064 x 512 (tied) + 10 layers x (2 norms of 512 + q,k,v,o 512x512 + gate,up,down 512x1408) + final norm.
        let parameters = 32_064 * 512 + 10 * (2 * 512 + 4 * 512 * 512 + 3 * 512 * 1408) + 512
        XCTAssertEqual(plan.parameters, parameters)
        XCTAssertEqual(parameters, 48_540_160)
        // 1,048,576 tokens per step: 5e9 / 2^20 = 4768.4 -> 4768 steps, 4.5e9 -> 4291.5 -> 4292, 0.5e9 -> 476.8 -> 477.
        XCTAssertEqual(plan.stages.map(\.steps), [4768, 4292, 477])
        XCTAssertEqual(plan.totalTokens, (4768 + 4292 + 477) * 1_048_576)
        XCTAssertEqual(plan.sequencesPerDevicePerStep, 64)
        XCTAssertEqual(plan.microStepsPerStep, 8)
        XCTAssertEqual(plan.flopsPerToken, 6 * Double(parameters) + 12 * 10 * 2048 * 512)
        XCTAssertEqual(plan.requiredTokensPerSecondPerDevice, Double(plan.totalTokens) / 86_400 / 8, accuracy: 1e-9)
        XCTAssertEqual(plan.requiredTokensPerSecondPerDevice, 14_468.0, accuracy: 1)
        XCTAssertEqual(plan.parameterBytes + plan.gradientBytes + plan.optimizerBytes, 16 * parameters)
        XCTAssertTrue(plan.fitsMemory && plan.fitsTime)
        XCTAssertEqual(plan.etaSeconds!, Double(plan.totalTokens) / (20_000 * 8), accuracy: 1e-6)
    }

    /// `plan --json` gives scripts (the recipe driver) each stage's global step range.
    func testJSONGivesEachStagesStepRange() throws {
        let config = repository.appendingPathComponent("configs/phi3-mini-draft-50m.yaml").path
        let r = try CLI.run(["plan", "--config", config, "--devices", "8", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let plan = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let stages = try XCTUnwrap(plan["stages"] as? [[String: Any]])
        XCTAssertEqual(stages.map { $0["name"] as? String }, ["pretrain", "code", "align"])
        XCTAssertEqual(stages.map { $0["first_step"] as? Int }, [1, 4769, 9061])
        XCTAssertEqual(stages.map { $0["last_step"] as? Int }, [4768, 9060, 9537])
        XCTAssertEqual(plan["total_steps"] as? Int, 9537)
        XCTAssertEqual(plan["parameters"] as? Int, 48_540_160)
    }

    func testPlanExitsNonZeroWhenTheScheduleCannotFit() throws {
        let config = repository.appendingPathComponent("configs/phi3-mini-draft-50m.yaml").path
        let fits = try CLI.run(["plan", "--config", config, "--tokens-per-second", "20000"])
        XCTAssertEqual(fits.status, 0, fits.stdout + fits.stderr)
        XCTAssertTrue(fits.stdout.contains("48,540,160"), fits.stdout)
        let tooSlow = try CLI.run(["plan", "--config", config, "--tokens-per-second", "10000"])
        XCTAssertEqual(tooSlow.status, 1, tooSlow.stdout)
        XCTAssertTrue(tooSlow.stdout.contains("EXCEEDS"), tooSlow.stdout)
        let tooSmall = try CLI.run(["plan", "--config", config, "--device-memory-gb", "2"])
        XCTAssertEqual(tooSmall.status, 1, tooSmall.stdout)
        XCTAssertTrue(tooSmall.stdout.contains("DOES NOT FIT"), tooSmall.stdout)
        let llama = try CLI.run(["plan", "--config", repository.appendingPathComponent("configs/llama31-8b-draft-150m.yaml").path,
                                 "--tokens-per-second", "15000"])
        XCTAssertEqual(llama.status, 0, llama.stdout)
        XCTAssertTrue(llama.stdout.contains("148,845,312"), llama.stdout)
    }
}
