import DraftDevice
import XCTest

/// `CPUDevice.gemm` against a double-precision reference, at the row counts where it leaves OpenBLAS's threaded sgemm:
/// matrix-vector products per row (1-2 rows) and single-threaded sgemm per column chunk (3-8 rows) on the worker
/// team, and plain sgemm beyond.
final class CPUGemmTests: XCTestCase {
    func testDecodeSizedProductsMatchAReference() throws {
        let device = CPUDevice(threads: 2)
        var state: UInt64 = 0x5EED
        func floats(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
            }
        }
        // n * k = 70,300: above the size the worker team takes (small products stay one sgemm call).
        let n = 703, k = 100
        for m in [1, 2, 3, 8, 9] {
            for transA in [false, true] {
                for transB in [false, true] {
                    // Leading dimensions wider than the rows, so that a wrong stride reads the padding.
                    let aRows = transA ? k : m, lda = (transA ? m : k) + 3
                    let bRows = transB ? n : k, ldb = (transB ? k : n) + 2
                    let ldc = n + 5
                    let a = floats(aRows * lda), b = floats(bRows * ldb), c = floats(m * ldc)
                    let da = try device.upload(a), db = try device.upload(b), dc = try device.upload(c)
                    defer { device.free(da); device.free(db); device.free(dc) }
                    try device.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.7, a: da, lda: lda,
                                    b: db, ldb: ldb, beta: 0.3, c: dc, ldc: ldc)
                    let got = try device.download(dc, count: m * ldc)
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<ldc {
                            var expected = Double(c[i * ldc + j])
                            if j < n {
                                var sum = 0.0
                                for p in 0..<k {
                                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                                    sum += Double(av) * Double(bv)
                                }
                                expected = 0.7 * sum + 0.3 * expected
                            }
                            // Padding columns of C must be left as they were.
                            worst = max(worst, abs(Double(got[i * ldc + j]) - expected))
                        }
                    }
                    XCTAssertLessThan(worst, 1e-4, "m \(m), transA \(transA), transB \(transB)")
                }
            }
        }
    }
}
