import Foundation
import XCTest

/// Preemption: SIGTERM to `mpirun` (as a scheduler sends it) makes every rank finish its step, write one checkpoint
/// and exit 0; resuming continues the same curve as an uninterrupted run.
final class PreemptionTests: XCTestCase {
    func testSIGTERMUnderMPIRunCheckpointsAndResumes() throws {
        let fixture = try RunFixture("sigterm")
        defer { fixture.remove() }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun not installed") }
        let config = try fixture.writeConfig(everySteps: 1000)
        let straight = fixture.work.appendingPathComponent("straight")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: straight, ranks: 2, arguments: ["--max-steps", "60"]).status, 0)

        let run = fixture.work.appendingPathComponent("run")
        let process = Process()
        process.executableURL = fixture.repository.appendingPathComponent("launch/train.sh")
        process.arguments = ["-n", "2", "--config", config.path, "--run-dir", run.path, "--quiet"]
        // Slow each step a little so the signal lands mid-run rather than after the last step.
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["SWIFTDRAFT_BIN": try CLI.binary.path, "SWIFTDRAFT_TEST_STEP_DELAY_S": "0.05"]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        let stderr = Pipe()
        process.standardError = stderr
        try process.run()
        let metrics = run.appendingPathComponent("metrics.jsonl")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let lines = (try? String(contentsOf: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= 5 { break }
            usleep(50_000)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationReason, .exit, errors)
        XCTAssertEqual(process.terminationStatus, 0, errors)

        let stopped = try stepLosses(run)
        let lastStep = try XCTUnwrap(stopped.keys.max())
        XCTAssertLessThan(lastStep, 60, "the signal should stop the run early")
        let events = try readMetrics(run).filter { $0["event"] as? String == "checkpoint" }
        XCTAssertEqual(events.last?["step"] as? Int, lastStep)
        XCTAssertEqual(events.last?["reason"] as? String, "preemption")
        XCTAssertEqual(try CLI.run(["inspect", checkpoint(run, step: lastStep).path]).status, 0)

        let resumed = try fixture.train(config: config, runDirectory: run, ranks: 2, arguments: ["--max-steps", "60"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let a = try stepLosses(run), b = try stepLosses(straight)
        for step in 1...60 { XCTAssertEqual(a[step], b[step], "step \(step) after preemption at \(lastStep)") }
        print("preempted at step \(lastStep), resumed to 60 on the same curve")
    }
}

/// Non-finite steps: a NaN gradient skips the update on every rank (logged), and more than `max_bad_steps` in a row
/// stops the run with exit 1 and the last good checkpoint intact.
final class BadStepTests: XCTestCase {
    func testNonFiniteStepsAreSkippedThenStopTheRun() throws {
        let fixture = try RunFixture("nan")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 5, extra: "")
        let run = fixture.work.appendingPathComponent("run")
        // Steps 3 and 4 poisoned: skipped, training goes on.
        let skipped = try fixture.train(config: config, runDirectory: run, ranks: 2, arguments: ["--max-steps", "10"],
                                        environment: ["SWIFTDRAFT_TEST_NAN_STEPS": "3-4"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        let skips = try readMetrics(run).filter { $0["event"] as? String == "skip_step" }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(skips, [3, 4])

        // Steps 13-30 poisoned with max_bad_steps 5 (the default): the run stops at step 18, exit 1, and the newest
        // checkpoint is the good one from step 10.
        let stopped = try fixture.train(config: config, runDirectory: run, ranks: 2, arguments: ["--max-steps", "40"],
                                        environment: ["SWIFTDRAFT_TEST_NAN_STEPS": "13-30"])
        XCTAssertEqual(stopped.status, 1, stopped.stderr)
        XCTAssertTrue(stopped.stderr.contains("max_bad_steps"), stopped.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
        XCTAssertEqual(files.filter { $0.hasSuffix(".h5") }.sorted().last, "step-00000010.h5", "\(files)")
    }
}

/// `--debug` names the first kernel that produced a non-finite value, instead of a NaN loss many ops later.
final class DebugModeTests: XCTestCase {
    func testDebugNamesTheFirstNonFiniteKernel() throws {
        let fixture = try RunFixture("debug")
        defer { fixture.remove() }
        // An absurd learning rate without clipping makes the weights overflow after the first update.
        let r = try fixture.train(config: fixture.writeConfig(), runDirectory: fixture.work.appendingPathComponent("run"),
                                  arguments: ["--debug", "--max-steps", "5", "--set", "optimizer.lr=1e38",
                                              "--set", "optimizer.min_lr=1e37", "--set", "optimizer.grad_clip=0",
                                              "--set", "lr_schedule.kind=constant"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("--debug: kernel"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        print(r.stderr)
    }
}
