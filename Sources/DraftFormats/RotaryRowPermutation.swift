/// The row order of rotary q/k projections in GGUF `llama` files versus Hugging Face checkpoints — the one place in
/// SwiftDraft that knows it.
///
/// Hugging Face rotates the pairs `(x[i], x[i + headDim/2])` of each head ("half-split"); ggml's llama rope rotates
/// adjacent pairs `(x[2i], x[2i + 1])` ("interleaved"). llama.cpp's converter therefore reorders each head's output
/// rows of `attn_q`/`attn_k`: per head, HF row `s * headDim/2 + i` (s = 0 or 1) becomes GGUF row `2i + s` — numpy's
/// `w.reshape(heads, 2, headDim/2, rest).swapaxes(1, 2)`. With that order an interleaved rope on the GGUF rows gives
/// the half-split rope's result on the HF rows, reordered the same way. `k` uses the KV head count.
///
/// Whole rows move, whatever their bytes, so the permutation applies to quantized rows as well.
public enum RotaryRowPermutation {
    public enum Direction: Sendable {
        /// Hugging Face's half-split rows to GGUF's interleaved rows (what export to GGUF does).
        case hfToGGUF
        /// GGUF's interleaved rows back to Hugging Face's (what loading a GGUF for a half-split rope kernel does).
        case ggufToHF
    }

    /// The GGUF row that Hugging Face row `row` becomes, for a projection of `rows` rows in `heads` heads.
    public static func ggufRow(ofHFRow row: Int, heads: Int, rows: Int) -> Int {
        let headDim = rows / heads, half = headDim / 2
        let head = row / headDim, within = row % headDim
        return head * headDim + 2 * (within % half) + within / half
    }

    /// The Hugging Face row that GGUF row `row` came from (the inverse of `ggufRow(ofHFRow:heads:rows:)`).
    public static func hfRow(ofGGUFRow row: Int, heads: Int, rows: Int) -> Int {
        let headDim = rows / heads, half = headDim / 2
        let head = row / headDim, within = row % headDim
        return head * headDim + (within % 2) * half + within / 2
    }

    /// Checks that `rows` split into `heads` heads of an even size; the message names `what` (a tensor).
    public static func validate(rows: Int, heads: Int, what: String) throws {
        guard heads > 0, rows > 0, rows % heads == 0, (rows / heads) % 2 == 0 else {
            throw FormatError("\(what): \(rows) rows do not split into \(heads) heads of an even size, as the rotary "
                + "row permutation needs")
        }
    }

    /// Copies `rows` rows of `rowBytes` bytes each from `source` to `destination` (not overlapping) in the permuted
    /// order of `direction`.
    public static func permuteRows(_ source: UnsafeRawPointer, into destination: UnsafeMutableRawPointer, rows: Int,
                                   rowBytes: Int, heads: Int, direction: Direction, what: String = "rotary rows") throws {
        try validate(rows: rows, heads: heads, what: what)
        for from in 0..<rows {
            let to = direction == .hfToGGUF ? ggufRow(ofHFRow: from, heads: heads, rows: rows)
                : hfRow(ofGGUFRow: from, heads: heads, rows: rows)
            (destination + to * rowBytes).copyMemory(from: source + from * rowBytes, byteCount: rowBytes)
        }
    }

    /// A row-major `(rows, columns)` float matrix (or a bias vector, `columns` = 1) with its rows permuted.
    public static func permute(_ values: [Float], rows: Int, columns: Int, heads: Int, direction: Direction,
                               what: String = "rotary rows") throws -> [Float] {
        guard values.count == rows * columns else {
            throw FormatError("\(what): \(values.count) values are not \(rows) rows of \(columns)")
        }
        var out = [Float](repeating: 0, count: values.count)
        try values.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                try permuteRows(s, into: d, rows: rows, rowBytes: 4 * columns, heads: heads, direction: direction,
                                what: what)
            }
        }
        return out
    }
}
