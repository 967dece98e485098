import DraftFormats
import XCTest

/// The HF <-> GGUF rotary row order: numpy's reshape/swapaxes on a small case, round trips, and that an interleaved
/// rope on permuted rows is a half-split rope on the original rows.
final class RotaryRowPermutationTests: XCTestCase {
    func testMatchesTheConvertersReshape() {
        // heads = 2, headDim = 4: numpy's w.reshape(2, 2, 2, -1).swapaxes(1, 2).reshape(8, -1) takes HF rows
        // [0, 2, 1, 3, 4, 6, 5, 7] into GGUF rows 0..<8.
        let ggufFromHF = [0, 2, 1, 3, 4, 6, 5, 7]
        for (g, h) in ggufFromHF.enumerated() {
            XCTAssertEqual(RotaryRowPermutation.ggufRow(ofHFRow: h, heads: 2, rows: 8), g)
            XCTAssertEqual(RotaryRowPermutation.hfRow(ofGGUFRow: g, heads: 2, rows: 8), h)
        }
    }

    func testRoundTripIsIdentityOnAnyRowSize() throws {
        for (rows, heads) in [(8, 2), (64, 1), (576, 9), (192, 3)] {
            for rowBytes in [1, 34, 4 * 7] {
                let src = (0..<(rows * rowBytes)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 7) }
                var mid = [UInt8](repeating: 0, count: src.count), back = mid
                try src.withUnsafeBytes { s in
                    try mid.withUnsafeMutableBytes { m in
                        try RotaryRowPermutation.permuteRows(s.baseAddress!, into: m.baseAddress!, rows: rows,
                                                             rowBytes: rowBytes, heads: heads, direction: .hfToGGUF)
                    }
                }
                try mid.withUnsafeBytes { m in
                    try back.withUnsafeMutableBytes { b in
                        try RotaryRowPermutation.permuteRows(m.baseAddress!, into: b.baseAddress!, rows: rows,
                                                             rowBytes: rowBytes, heads: heads, direction: .ggufToHF)
                    }
                }
                XCTAssertNotEqual(mid, src)
                XCTAssertEqual(back, src, "rows \(rows) heads \(heads) rowBytes \(rowBytes)")
            }
        }
        XCTAssertThrowsError(try RotaryRowPermutation.permute([Float](repeating: 0, count: 30), rows: 10, columns: 3,
                                                               heads: 4, direction: .hfToGGUF, what: "blk.0.attn_q.weight")) {
            XCTAssertTrue("\($0)".hasPrefix("blk.0.attn_q.weight: 10 rows do not split into 4 heads"))
        }
    }

    /// q = W x with a half-split rope (HF) equals, row for row after un-permuting, q' = W' x with an interleaved rope
    /// (GGUF), W' the permuted W.
    func testInterleavedRopeOnPermutedRowsIsHalfSplitRope() throws {
        let heads = 3, headDim = 8, rows = heads * headDim, columns = 5, position: Float = 7
        var rng = SplitMix(seed: 9)
        func random() -> Float { Float(Int(rng.next() % 2001) - 1000) / 1000 }
        let w = (0..<(rows * columns)).map { _ in random() }
        let x = (0..<columns).map { _ in random() }
        let frequencies = (0..<(headDim / 2)).map { Float(1 / pow(10000, Double(2 * $0) / Double(headDim))) }
        func project(_ m: [Float]) -> [Float] {
            (0..<rows).map { r in (0..<columns).reduce(Float(0)) { $0 + m[r * columns + $1] * x[$1] } }
        }
        func halfSplit(_ v: [Float]) -> [Float] {
            var v = v
            for h in 0..<heads {
                for i in 0..<(headDim / 2) {
                    let c = cos(position * frequencies[i]), s = sin(position * frequencies[i])
                    let a = h * headDim + i, b = a + headDim / 2
                    (v[a], v[b]) = (v[a] * c - v[b] * s, v[a] * s + v[b] * c)
                }
            }
            return v
        }
        func interleaved(_ v: [Float]) -> [Float] {
            var v = v
            for h in 0..<heads {
                for i in 0..<(headDim / 2) {
                    let c = cos(position * frequencies[i]), s = sin(position * frequencies[i])
                    let e = h * headDim + 2 * i, o = e + 1
                    (v[e], v[o]) = (v[e] * c - v[o] * s, v[e] * s + v[o] * c)
                }
            }
            return v
        }
        let hf = halfSplit(project(w))
        let gguf = interleaved(project(try RotaryRowPermutation.permute(w, rows: rows, columns: columns, heads: heads,
                                                                        direction: .hfToGGUF)))
        let back = try RotaryRowPermutation.permute(gguf, rows: rows, columns: 1, heads: heads, direction: .ggufToHF)
        for r in 0..<rows { XCTAssertEqual(back[r], hf[r], accuracy: 1e-5, "row \(r)") }
        // Without the permutation the interleaved rope gives something else, so the check above is not vacuous.
        let wrong = interleaved(project(w))
        XCTAssertGreaterThan(zip(wrong, hf).map { abs($0 - $1) }.max() ?? 0, 0.01)
    }
}
