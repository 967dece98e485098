import Foundation
import XCTest

/// Issue 9, item 6: a setting the program cannot honour is honoured or refused, never silently replaced.
final class NoQuietFallbackTests: XCTestCase {
    /// `--device` with a backend that does not exist is bad input on every command that takes it, not the CPU.
    func testUnknownDeviceIsExitTwo() throws {
        let fixture = try RunFixture("unknown-device")
        defer { fixture.remove() }
        let config = try fixture.writeConfig().path
        for command in [["bench", "--steps", "1"], ["plan"], ["train"]] {
            let r = try CLI.run(command + ["--config", config, "--device", "gpu"])
            XCTAssertEqual(r.status, 2, "\(command[0]): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("--device") && r.stderr.contains("gpu"), r.stderr)
            XCTAssertTrue(r.stdout.isEmpty, r.stdout)
        }
    }

    /// `distributed.overlap: true` on the HPU backend overlaps: buckets are staged to the host and their
    /// all-reduce started during backward, and the losses are the CPU's (overlap does not change the sum's order).
    func testHPUOverlapStagesBucketsDuringBackward() throws {
        let fixture = try RunFixture("hpu-overlap")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(overlap: true)
        let cpu = fixture.work.appendingPathComponent("cpu")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: cpu, arguments: ["--max-steps", "8"]).status, 0)
        let reference = try stepLosses(cpu)
        var losses: [Bool: [Int: Double]] = [:]
        for overlap in [true, false] {
            let run = fixture.work.appendingPathComponent("hpu-overlap-\(overlap)")
            let r = try fixture.train(config: config, runDirectory: run, ranks: 4,
                                      arguments: ["--max-steps", "8", "--device", "hpu",
                                                  "--set", "distributed.overlap=\(overlap)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            losses[overlap] = try stepLosses(run)
            let logged = try readMetrics(run).filter { $0["event"] == nil }
            XCTAssertEqual(logged.count, 8)
            for line in logged {
                let during = try XCTUnwrap(line["allreduce_buckets_during_backward"] as? Int, "\(line)")
                if overlap {
                    XCTAssertGreaterThan(during, 0, "with overlap, buckets start during backward on the HPU: \(line)")
                } else {
                    XCTAssertEqual(during, 0, "\(line)")
                }
                XCTAssertGreaterThan(line["bytes_to_host"] as? Int ?? 0, 0, "the gradient is staged: \(line)")
            }
        }
        for step in 1...8 {
            let on = try XCTUnwrap(losses[true]?[step]), off = try XCTUnwrap(losses[false]?[step])
            XCTAssertEqual(on, off, "step \(step): overlap on and off sum the same buckets in the same order")
            let cpuLoss = try XCTUnwrap(reference[step])
            XCTAssertLessThanOrEqual(abs(on - cpuLoss) / cpuLoss, 1e-5, "step \(step): hpu \(on) vs cpu \(cpuLoss)")
        }
    }

    /// `bench` on the HPU under mpirun reduces the gradient like training does, so its all-reduce time is measured,
    /// not skipped.
    func testBenchOnHPUUnderMPIReducesGradients() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun not installed") }
        let fixture = try RunFixture("hpu-bench")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(overlap: true).path
        for overlap in [true, false] {
            var arguments = ["-np", "2", "--oversubscribe", "--bind-to", "none"]
            if getuid() == 0 { arguments.append("--allow-run-as-root") }
            arguments += [try CLI.binary.path, "bench", "--config", config, "--device", "hpu", "--steps", "2", "--json",
                          "--set", "distributed.overlap=\(overlap)"]
            let r = try CLI.run(arguments, environment: ["OPENBLAS_NUM_THREADS": "1"],
                                executable: URL(fileURLWithPath: "/usr/bin/mpirun"))
            XCTAssertEqual(r.status, 0, r.stderr)
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") }, r.stdout)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(json["ranks"] as? Int, 2)
            XCTAssertTrue((json["device"] as? String)?.hasPrefix("hpu") == true, line.description)
            XCTAssertGreaterThan(json["allreduce_s"] as? Double ?? 0, 0, "overlap \(overlap): \(line)")
        }
    }

    /// Resume warnings carry one "warning: " prefix.
    func testResumeWarningHasOnePrefix() throws {
        let fixture = try RunFixture("warning-prefix")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 2)
        let run = fixture.work.appendingPathComponent("run")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "4"]).status, 0)
        let newest = checkpoint(run, step: 4)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: newest.path)[.size] as? Int)
        XCTAssertEqual(truncate(newest.path, off_t(size / 2)), 0)
        let resumed = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "6"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let warnings = resumed.stderr.split(separator: "\n").filter { $0.contains("warning") }
        XCTAssertFalse(warnings.isEmpty, "skipping the damaged checkpoint is reported: \(resumed.stderr)")
        for line in warnings {
            XCTAssertTrue(line.hasPrefix("warning: "), String(line))
            XCTAssertFalse(line.contains("warning: warning:"), String(line))
        }
    }
}
