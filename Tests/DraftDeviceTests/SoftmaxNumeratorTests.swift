import DraftDevice
import Foundation
import XCTest

/// `softmaxNumerators`, the samplers' vectorised softmax, against `exp` in double.
final class SoftmaxNumeratorTests: XCTestCase {
    func testMatchesExpAndKeepsMinusInfinityAtZero() throws {
        // 49,155 values: whole 512-value flushes, a part flush and a 3-value scalar tail.
        var rng = SystemRandomNumberGenerator()
        var x = (0..<49_155).map { _ in Float.random(in: -30...12, using: &rng) }
        for i in stride(from: 5, to: x.count, by: 7) { x[i] = -.infinity }  // ids outside a subset head
        x[49_154] = -.infinity
        for scale: Float in [1, 1 / 0.6, 10] {
            var out = [Float](repeating: .nan, count: x.count)
            let total = try XCTUnwrap(x.withUnsafeBufferPointer { xs in
                out.withUnsafeMutableBufferPointer { softmaxNumerators(xs.baseAddress!, count: xs.count, scale: scale, into: $0.baseAddress!) }
            })
            // The argument as the function forms it, in float; against exp of it in double, what is left is the
            // polynomial's error (about 2 ulp).
            let maximum = x.max()!
            var expected = 0.0, worst = 0.0
            for (value, got) in zip(x, out) {
                let e = value == -.infinity ? 0 : exp(Double((value - maximum) * scale))
                expected += e
                if value == -.infinity {
                    XCTAssertEqual(got, 0, "exp(-inf) must be exactly 0")
                } else if e > 1.2e-38 {
                    worst = max(worst, abs(Double(got) - e) / e)
                } else {
                    XCTAssertLessThanOrEqual(Double(got), 1.2e-38)  // below vexp's range: 0
                }
            }
            XCTAssertLessThan(worst, 1e-6, "scale \(scale): relative error against exp")
            XCTAssertEqual(total, expected, accuracy: 1e-6 * expected, "scale \(scale)")
        }
    }

    func testNothingToNormaliseIsNil() {
        let none: [Float] = [-.infinity, -.infinity, -.infinity]
        var out = [Float](repeating: 0, count: 3)
        XCTAssertNil(none.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { softmaxNumerators(xs.baseAddress!, count: 3, scale: 1, into: $0.baseAddress!) }
        })
        XCTAssertNil(none.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { softmaxNumerators(xs.baseAddress!, count: 0, scale: 1, into: $0.baseAddress!) }
        })
    }
}
