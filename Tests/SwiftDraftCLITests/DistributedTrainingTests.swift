import Foundation
import XCTest

/// Data parallelism is the same math as one process: the configured world of 8 run as 8, 4 and 2 MPI ranks and as
/// one process accumulating all 8 slices gives the same per-step losses and final parameters, overlap on or off.
final class DistributedTrainingTests: XCTestCase {
    func testRankCountsAndOverlapGiveTheSameTraining() throws {
        let fixture = try RunFixture("dist")
        defer { fixture.remove() }
        let steps = 20
        let reference = fixture.work.appendingPathComponent("single")
        let single = try fixture.train(config: fixture.writeConfig("single"), runDirectory: reference,
                                       arguments: ["--max-steps", "\(steps)"])
        XCTAssertEqual(single.status, 0, single.stderr)
        let referenceLosses = try stepLosses(reference)
        XCTAssertEqual(referenceLosses.count, steps)
        let referenceTensors = try checkpointTensors(checkpoint(reference, step: steps))

        for (ranks, overlap) in [(8, true), (4, true), (2, true), (8, false), (2, false)] {
            let name = "np\(ranks)-\(overlap ? "overlap" : "blocking")"
            let run = fixture.work.appendingPathComponent(name)
            let r = try fixture.train(config: fixture.writeConfig(name, overlap: overlap), runDirectory: run,
                                      ranks: ranks, arguments: ["--max-steps", "\(steps)"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let losses = try stepLosses(run)
            for step in 1...steps {
                let a = try XCTUnwrap(losses[step], "\(name) step \(step)"), b = try XCTUnwrap(referenceLosses[step])
                XCTAssertLessThanOrEqual(abs(a - b) / b, 1e-5, "\(name) step \(step): loss \(a) vs single process \(b)")
            }
            let tensors = try checkpointTensors(checkpoint(run, step: steps))
            var worst = 0.0
            for (name, values) in referenceTensors where name.hasPrefix("model/") {
                worst = max(worst, maxRelativeDifference(try XCTUnwrap(tensors[name]), values))
            }
            XCTAssertLessThanOrEqual(worst, 1e-4, "\(name): final parameters")
            print("\(name): final loss \(losses[steps]!) vs \(referenceLosses[steps]!); max parameter difference \(worst)")
        }
    }

    func testFailingRankEndsTheJobQuickly() throws {
        let fixture = try RunFixture("fail")
        defer { fixture.remove() }
        let start = Date()
        let r = try fixture.train(config: fixture.writeConfig(), runDirectory: fixture.work.appendingPathComponent("run"),
                                  ranks: 4, environment: ["SWIFTDRAFT_TEST_FAIL_AT": "3:5"])
        let seconds = Date().timeIntervalSince(start)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(seconds, 30, "the job must end within seconds, not hang")
        XCTAssertTrue(r.stderr.contains("rank 3"), "stderr names the failing rank: \(r.stderr)")
        print("failing rank: exit \(r.status) after \(String(format: "%.1f", seconds)) s")
    }
}
