import Foundation
import XCTest

/// Training through the HPU stub plugin is the same training as on the CPU, and the plugin's failures are bad input.
final class HPUTrainingTests: XCTestCase {
    func testHPUMatchesCPUInOneProcessAndOnEightModules() throws {
        let fixture = try RunFixture("hpu")
        defer { fixture.remove() }
        let config = try fixture.writeConfig()
        let cpu = fixture.work.appendingPathComponent("cpu")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: cpu, arguments: ["--max-steps", "20", "--device", "cpu"]).status, 0)
        let reference = try stepLosses(cpu)
        for ranks in [1, 8] {
            let run = fixture.work.appendingPathComponent("hpu-\(ranks)")
            let r = try fixture.train(config: config, runDirectory: run, ranks: ranks,
                                      arguments: ["--max-steps", "20", "--device", "hpu"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let losses = try stepLosses(run)
            for step in 1...20 {
                let a = try XCTUnwrap(losses[step]), b = try XCTUnwrap(reference[step])
                XCTAssertLessThanOrEqual(abs(a - b) / b, 1e-5, "\(ranks) rank(s), step \(step): hpu \(a) vs cpu \(b)")
            }
            let start = try XCTUnwrap(readMetrics(run).first { $0["event"] as? String == "start" })
            XCTAssertEqual(start["modules"] as? String, (0..<ranks).map(String.init).joined(separator: ","),
                           "each rank drives its own module")
            let logged = try readMetrics(run).first { $0["event"] == nil }
            XCTAssertGreaterThan(logged?["bytes_to_device"] as? Int ?? 0, 0, "host<->device traffic is reported")
        }
    }

    func testCheckpointsMoveBetweenHPUAndCPU() throws {
        let fixture = try RunFixture("hpu-ckpt")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 10)
        let straight = fixture.work.appendingPathComponent("straight")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: straight, arguments: ["--max-steps", "20"]).status, 0)
        let reference = try stepLosses(straight)
        for (first, second) in [("hpu", "cpu"), ("cpu", "hpu")] {
            let run = fixture.work.appendingPathComponent("\(first)-then-\(second)")
            XCTAssertEqual(try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "10", "--device", first]).status, 0)
            let r = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "20", "--device", second])
            XCTAssertEqual(r.status, 0, r.stderr)
            let losses = try stepLosses(run)
            for step in 11...20 {
                let a = try XCTUnwrap(losses[step]), b = try XCTUnwrap(reference[step])
                XCTAssertLessThanOrEqual(abs(a - b) / b, 1e-5, "\(first) then \(second), step \(step)")
            }
        }
    }

    func testPluginProblemsAreBadInput() throws {
        let fixture = try RunFixture("hpu-bad")
        defer { fixture.remove() }
        let missing = fixture.work.appendingPathComponent("no-such-plugin.so").path
        let a = try fixture.train(config: fixture.writeConfig(extra: "device: {kind: hpu, plugin: \(missing)}"),
                                  runDirectory: fixture.work.appendingPathComponent("a"))
        XCTAssertEqual(a.status, 2, a.stderr)
        XCTAssertTrue(a.stderr.contains(missing), a.stderr)
        let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"].first {
            FileManager.default.fileExists(atPath: $0)
        }
        if let libm {
            let b = try fixture.train(config: fixture.writeConfig(extra: "device: {kind: hpu, plugin: \(libm)}"),
                                      runDirectory: fixture.work.appendingPathComponent("b"))
            XCTAssertEqual(b.status, 2, b.stderr)
            XCTAssertTrue(b.stderr.contains(libm) && b.stderr.contains("hpuGetPluginApi"), b.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fixture.work.appendingPathComponent("a").path))
    }

    func testOutOfDeviceMemoryNamesModuleAndBytes() throws {
        let fixture = try RunFixture("hpu-oom")
        defer { fixture.remove() }
        let r = try fixture.train(config: fixture.writeConfig(), runDirectory: fixture.work.appendingPathComponent("run"),
                                  arguments: ["--device", "hpu", "--set", "model.vocab_size=40000"],
                                  environment: ["HPU_STUB_MEMORY_MB": "1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("module 0"), r.stderr)
        XCTAssertTrue(r.stderr.range(of: #"\d+ bytes"#, options: .regularExpression) != nil, r.stderr)
        // plan warns before any training starts.
        let config = fixture.repository.appendingPathComponent("configs/phi3-mini-draft-50m.yaml").path
        let plan = try CLI.run(["plan", "--config", config, "--device", "hpu"], environment: ["HPU_STUB_MEMORY_MB": "512"])
        XCTAssertEqual(plan.status, 1, plan.stdout)
        XCTAssertTrue(plan.stderr.contains("warning"), plan.stderr)
    }
}
