import Foundation
import XCTest

/// `log.tensorboard` (on by default): what `metrics.jsonl` logs is what `tensorboard --logdir runs` shows, read here
/// with TensorBoard's own EventAccumulator.
final class TensorBoardTests: XCTestCase {
    func testTrainingCurvesReachTensorBoard() throws {
        let fixture = try RunFixture("tensorboard")
        defer { fixture.remove() }
        let config = try fixture.writeConfig()
        let run = fixture.work.appendingPathComponent("run")
        let r = try fixture.train(config: config, runDirectory: run,
                                  arguments: ["--max-steps", "12", "--set", "log.eval_every_steps=6"])
        XCTAssertEqual(r.status, 0, r.stderr)

        let script = fixture.repository.appendingPathComponent("scripts/reference/tensorboard_scalars.py").path
        let python = try testPython(repository: fixture.repository)
        let out = try CLI.run([script, run.appendingPathComponent("tensorboard").path], executable: URL(fileURLWithPath: python))
        XCTAssertEqual(out.status, 0, out.stderr)
        let scalars = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: [[Double]]])

        let losses = try stepLosses(run)
        let logged = try XCTUnwrap(scalars["train/loss"])
        XCTAssertEqual(logged.map { Int($0[0]) }, Array(1...12))
        for point in logged {
            XCTAssertEqual(point[1], Double(Float(losses[Int(point[0])]!)), accuracy: 1e-6)
        }
        for tag in ["train/lr", "train/grad_norm", "train/tokens_per_s"] {
            XCTAssertEqual(scalars[tag]?.count, 12, "\(tag) missing from the event file")
        }
        XCTAssertEqual(scalars["val_loss/code"]?.map { Int($0[0]) }, [6, 12])
    }

    /// MFU is the model's FLOP rate over the device's measured peak; a peak measured on a busy machine (here: given
    /// as 0.001 GFLOP/s) is measured again when a step beats it, so no logged MFU exceeds 1.
    func testMFUStaysAtMostOneWhenTheStartMeasuredALowPeak() throws {
        let fixture = try RunFixture("mfu-peak")
        defer { fixture.remove() }
        let config = try fixture.writeConfig()
        let run = fixture.work.appendingPathComponent("run")
        let r = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "3"],
                                  environment: ["SWIFTDRAFT_TEST_PEAK_GFLOPS": "0.001"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let mfus = try readMetrics(run).filter { $0["event"] == nil }.compactMap { $0["mfu"] as? Double }
        XCTAssertEqual(mfus.count, 3)
        for mfu in mfus { XCTAssert(mfu > 0 && mfu <= 1, "logged MFU \(mfu)") }
    }

    func testTensorBoardCanBeTurnedOff() throws {
        let fixture = try RunFixture("tensorboard-off")
        defer { fixture.remove() }
        let config = try fixture.writeConfig()
        let run = fixture.work.appendingPathComponent("run")
        let r = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "2", "--set", "log.tensorboard=false"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("tensorboard").path))
    }
}

/// The tests' Python (`$SWIFTDRAFT_PYTHON`, else the venv `scripts/python-env.sh` makes and prints).
func testPython(repository: URL) throws -> String {
    if let python = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"], !python.isEmpty { return python }
    let env = try CLI.run([repository.appendingPathComponent("scripts/python-env.sh").path],
                          executable: URL(fileURLWithPath: "/bin/bash"))
    XCTAssertEqual(env.status, 0, "scripts/python-env.sh failed: \(env.stderr)")
    return env.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}
