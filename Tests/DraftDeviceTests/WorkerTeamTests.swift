import DraftDevice
import Dispatch
import XCTest

/// The CPU kernels split their work over `parallelChunks`, which runs the chunks on spinning persistent workers. These
/// drive it through public kernels many thousands of times: every chunk must run exactly once per call (a chunk run
/// twice or skipped leaves a wrong element), reductions over chunks must stay bit-identical from call to call, and
/// callers on several threads at once (the team takes one job at a time; the others go through Dispatch) must each
/// get their own correct results.
final class WorkerTeamTests: XCTestCase {
    /// Large enough that `add` (grain 2^16) and `sumOfSquares` (2^16 per chunk) split over two threads.
    let count = 3 << 16

    private func inputs(_ seed: Float) -> ([Float], [Float]) {
        let a = (0..<count).map { Float($0 % 977) * 0.001 + seed }
        let b = (0..<count).map { Float($0 % 113) * -0.002 }
        return (a, b)
    }

    func testEveryChunkRunsOncePerCall() throws {
        let device = CPUDevice(threads: 2)
        let (a, b) = inputs(1)
        let pa = try device.upload(a), pb = try device.upload(b), out = try device.allocate(Float.self, count: count)
        defer { device.free(pa); device.free(pb); device.free(out) }
        let expected = zip(a, b).map { $0 + $1 }
        for round in 0..<1000 {
            // Cleared first, so a skipped chunk leaves zeros; `out + b` is not idempotent, so a chunk run twice adds b
            // twice: either shows up as a wrong element.
            try device.scale(out, count: count, by: 0)
            try device.add(pa, pb, out, count: count)
            try device.add(out, pb, out, count: count)
            let got = try device.download(out, count: count)
            let wrong = (0..<count).first { got[$0] != expected[$0] + b[$0] }
            XCTAssertNil(wrong, "round \(round): element \(wrong ?? -1)")
            if wrong != nil { return }
        }
    }

    func testChunkedReductionIsBitIdenticalAcrossCalls() throws {
        let device = CPUDevice(threads: 2)
        let (a, _) = inputs(0.5)
        let pa = try device.upload(a), result = try device.allocate(Float.self, count: 1)
        defer { device.free(pa); device.free(result) }
        try device.sumOfSquares(pa, count: count, into: result)
        let first = try device.download(result, count: 1)[0]
        let exact = a.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertEqual(Double(first), exact, accuracy: exact * 1e-6)
        for _ in 0..<2000 {
            try device.sumOfSquares(pa, count: count, into: result)
            XCTAssertEqual(try device.download(result, count: 1)[0].bitPattern, first.bitPattern)
        }
    }

    /// Devices on several threads at once (each its own: a device's allocation table is not for concurrent use), all
    /// sharing the process's one team.
    func testCallersOnSeveralThreadsAtOnce() throws {
        let callers = 4
        var failures = [String?](repeating: nil, count: callers)
        failures.withUnsafeMutableBufferPointer { failures in
            DispatchQueue.concurrentPerform(iterations: callers) { caller in
                do {
                    let device = CPUDevice(threads: 2)
                    let (a, b) = inputs(Float(caller))
                    let pa = try device.upload(a), pb = try device.upload(b)
                    let out = try device.allocate(Float.self, count: count)
                    defer { device.free(pa); device.free(pb); device.free(out) }
                    for _ in 0..<300 {
                        try device.add(pa, pb, out, count: count)
                        let got = try device.download(out, count: count)
                        if let i = (0..<count).first(where: { got[$0] != a[$0] + b[$0] }) {
                            failures[caller] = "caller \(caller): element \(i) is \(got[i]), expected \(a[i] + b[i])"
                            return
                        }
                    }
                } catch {
                    failures[caller] = "caller \(caller): \(error)"
                }
            }
        }
        XCTAssertEqual(failures.compactMap { $0 }, [])
    }
}
