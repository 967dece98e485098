import DraftFormats
import Foundation

/// A GGUF file assembled byte by byte, independently of `GGUFWriter`, so reader tests do not test the writer
/// against itself. Fields may be set to wrong values on purpose.
struct HandBuiltGGUF {
    var magic = Array("GGUF".utf8)
    var version: UInt32 = 3
    var alignment = 32
    var kv = Data()
    var kvCount = 0
    var tensorInfos = Data()
    var tensorCount = 0
    var tensorData = Data()

    static func u32(_ v: UInt32) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
    static func u64(_ v: UInt64) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
    static func str(_ s: String) -> Data { u64(UInt64(s.utf8.count)) + Data(s.utf8) }

    /// A key with its raw type id and already-encoded value bytes.
    mutating func add(_ key: String, type: UInt32, _ value: Data) {
        kv += Self.str(key) + Self.u32(type) + value
        kvCount += 1
    }

    /// A tensor whose bytes are appended to the data section at the next aligned offset (or at `offset` when given).
    mutating func addTensor(_ name: String, dims: [UInt64], type: UInt32, bytes: Data, offset: UInt64? = nil) {
        while tensorData.count % alignment != 0 { tensorData.append(0) }
        let at = offset ?? UInt64(tensorData.count)
        tensorInfos += Self.str(name) + Self.u32(UInt32(dims.count))
        for d in dims { tensorInfos += Self.u64(d) }
        tensorInfos += Self.u32(type) + Self.u64(at)
        tensorData += bytes
        tensorCount += 1
    }

    var data: Data {
        var d = Data(magic) + Self.u32(version) + Self.u64(UInt64(tensorCount)) + Self.u64(UInt64(kvCount)) + kv + tensorInfos
        while d.count % alignment != 0 { d.append(0) }
        return d + tensorData
    }

    /// A small file with metadata of several types and three tensors (F32, F16 and Q8_0).
    static func sample() -> HandBuiltGGUF {
        var g = HandBuiltGGUF()
        g.add("general.architecture", type: 8, str("llama"))
        g.add("llama.block_count", type: 4, u32(2))
        g.add("llama.rope.freq_base", type: 6, u32(Float(10000).bitPattern))
        g.add("tokenizer.ggml.add_bos_token", type: 7, Data([1]))
        g.add("tokenizer.ggml.tokens", type: 9, u32(8) + u64(2) + str("a") + str("bc"))
        g.add("tokenizer.ggml.scores", type: 9, u32(6) + u64(2) + u32(Float(-1).bitPattern) + u32(Float(-2.5).bitPattern))
        g.add("signed", type: 11, u64(UInt64(bitPattern: -5)))
        let f32 = (0..<6).map { Float($0) * 0.5 }
        g.addTensor("norm.weight", dims: [3, 2], type: 0, bytes: f32.withUnsafeBytes { Data($0) })
        let f16: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x0000]  // 1, -2, 0.5, 0
        g.addTensor("half", dims: [4], type: 1, bytes: f16.withUnsafeBytes { Data($0) })
        var q8 = Data(u32(0).prefix(0))
        for b in 0..<2 {
            q8 += withUnsafeBytes(of: UInt16(0x3C00 + b)) { Data($0) }  // d = 1 and a little more
            q8 += Data((0..<32).map { UInt8(bitPattern: Int8($0 - 16)) })
        }
        g.addTensor("blk.0.attn_q.weight", dims: [32, 2], type: 8, bytes: q8)
        return g
    }
}
