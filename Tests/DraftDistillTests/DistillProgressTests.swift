import DraftDistill
import XCTest

/// The progress line under continuous batching: responses finish in waves, and the rate and ETA must describe the
/// run's real pace from the first finished wave on (a rate over the last few responses read 4.4 tokens/s and an ETA
/// of 15 hours for a run making 170 tokens/s).
final class DistillProgressTests: XCTestCase {
    func testRateAndETAFollowTheRunsPaceThroughWaves() {
        var now: UInt64 = 0
        var lines: [String] = []
        // 64 sequences at a time, 128 tokens each, 170 tokens/s: a wave of 64 every 48.2 s, finishing within 0.1 s.
        let batch = 64, tokensEach = 128, rate = 170.0
        let wave = Double(batch * tokensEach) / rate
        var progress = DistillProgress(total: 640, done: 0, log: { lines.append($0) }, warmup: batch,
                                       clock: { now })
        XCTAssertNil(progress.rate)
        for w in 0..<10 {
            for i in 0..<batch {
                now = UInt64((Double(w + 1) * wave + Double(i) * 0.1 / Double(batch)) * 1e9)
                progress.finished(tokens: tokensEach)
                if w == 0 && i < batch - 1 {
                    XCTAssertNil(progress.rate, "no rate before the first wave is done")
                } else {
                    // Finished responses lag the tokens made (a wave's are all made before its first finishes), so
                    // the rate reads low between waves, by at most one wave in w + 1 (half the pace in the second
                    // wave, within 10% from the tenth on), and the ETA long by the same factor; never the absurd
                    // figures a short window gives.
                    let measured = progress.rate!, eta = progress.eta!
                    XCTAssertGreaterThanOrEqual(measured, rate * Double(w) / Double(w + 1) * 0.99, "wave \(w) response \(i)")
                    XCTAssertLessThanOrEqual(measured, rate * 1.01, "wave \(w) response \(i)")
                    let left = Double(640 - progress.done) / Double(batch) * wave
                    XCTAssertLessThanOrEqual(eta, left * Double(w + 1) / Double(max(w, 1)) + wave, "wave \(w) response \(i)")
                    XCTAssertGreaterThanOrEqual(eta, left * 0.99 - wave, "wave \(w) response \(i)")
                }
            }
        }
        XCTAssertTrue(lines.first!.contains("rate and ETA once 64 responses"), lines.first!)
        // The first line with a rate comes with the first response of the second wave (lines are 2 s apart).
        XCTAssertTrue(lines[1].hasPrefix("distill: 65/640 responses, 8320 tokens, 86.3 tokens/s, ETA 14m"), lines[1])
        XCTAssertEqual(lines.last, "distill: 640/640 responses, 81920 tokens, 170.0 tokens/s, ETA 0s")
    }

    func testAResumedRunCountsOnlyItsOwnResponses() {
        var now: UInt64 = 5_000_000_000
        var progress = DistillProgress(total: 100, done: 90, log: { _ in }, warmup: 4, clock: { now })
        for i in 1...4 {
            now += 2_000_000_000
            progress.finished(tokens: 50)
            if i < 4 { XCTAssertNil(progress.eta) }
        }
        // 4 responses in 8 s of this run: 25 tokens/s, and 6 left at 2 s each.
        XCTAssertEqual(progress.rate!, 25, accuracy: 1e-9)
        XCTAssertEqual(progress.eta!, 12, accuracy: 1e-9)
    }
}
