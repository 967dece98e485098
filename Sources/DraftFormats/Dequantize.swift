/// Reference dequantization of ggml's block types to fp32: one function per type, each a direct reading of the block
/// layout in ggml's `ggml-common.h` (see `GGMLType`). These are the correctness reference and the export/load path;
/// the fast fused kernels live with the devices.
///
/// `count` is the number of weights and must be a whole number of `type.blockElements` (a `GGUFTensorInfo`'s rows
/// always are); a trailing partial block is not read and its outputs are left untouched.
public func dequantize(_ type: GGMLType, _ source: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, count: Int) {
    assert(count % type.blockElements == 0, "\(count) is not a whole number of \(type.name) blocks")
    let blocks = count / type.blockElements
    switch type {
    case .f32:
        out.update(from: source.bindMemory(to: Float.self, capacity: count), count: count)
    case .f16:
        for i in 0..<count { out[i] = halfToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .bf16:
        for i in 0..<count { out[i] = bf16ToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .q8_0: forEachBlock(type, blocks, source, out, dequantizeQ8_0)
    case .q4_0: forEachBlock(type, blocks, source, out, dequantizeQ4_0)
    case .q4_1: forEachBlock(type, blocks, source, out, dequantizeQ4_1)
    case .q5_0: forEachBlock(type, blocks, source, out, dequantizeQ5_0)
    case .q5_1: forEachBlock(type, blocks, source, out, dequantizeQ5_1)
    case .q4_K: forEachBlock(type, blocks, source, out, dequantizeQ4_K)
    case .q5_K: forEachBlock(type, blocks, source, out, dequantizeQ5_K)
    case .q6_K: forEachBlock(type, blocks, source, out, dequantizeQ6_K)
    }
}

/// Dequantizes `count` weights of `type` from `bytes` into a new array; nil when `bytes` is too short or `count` is
/// not a whole number of blocks.
public func dequantize(_ type: GGMLType, _ bytes: UnsafeRawBufferPointer, count: Int) -> [Float]? {
    guard let needed = type.byteCount(elements: count), needed <= bytes.count else { return nil }
    guard count > 0, let base = bytes.baseAddress else { return [] }
    return [Float](unsafeUninitializedCapacity: count) { buf, n in
        dequantize(type, base, into: buf.baseAddress!, count: count)
        n = count
    }
}

private typealias BlockDecoder = (UnsafePointer<UInt8>, UnsafeMutablePointer<Float>) -> Void

private func forEachBlock(_ type: GGMLType, _ blocks: Int, _ source: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>,
                          _ decode: BlockDecoder) {
    let bytes = source.assumingMemoryBound(to: UInt8.self)
    for b in 0..<blocks { decode(bytes + b * type.blockBytes, out + b * type.blockElements) }
}

/// A little-endian half stored at byte `offset` of a block (blocks are packed, so halves may be unaligned).
@inline(__always)
private func half(_ p: UnsafePointer<UInt8>, _ offset: Int) -> Float {
    halfToFloat(UInt16(p[offset]) | UInt16(p[offset + 1]) << 8)
}

// Q8_0: d, then 32 signed bytes; x = d * q.
private func dequantizeQ8_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0)
    for j in 0..<32 { y[j] = Float(Int8(bitPattern: p[2 + j])) * d }
}

// Q4_0: d, then 16 bytes whose low nibbles are weights 0..<16 and high nibbles 16..<32; x = d * (q - 8).
private func dequantizeQ4_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0)
    for j in 0..<16 {
        y[j] = Float(Int(p[2 + j] & 0x0F) - 8) * d
        y[j + 16] = Float(Int(p[2 + j] >> 4) - 8) * d
    }
}

// Q4_1: d, m, then nibbles as Q4_0; x = d * q + m.
private func dequantizeQ4_1(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0), m = half(p, 2)
    for j in 0..<16 {
        y[j] = Float(p[4 + j] & 0x0F) * d + m
        y[j + 16] = Float(p[4 + j] >> 4) * d + m
    }
}

/// The 32 fifth bits of a Q5 block: bit `j` of the little-endian u32 belongs to weight `j`.
@inline(__always)
private func highBits(_ p: UnsafePointer<UInt8>, _ offset: Int) -> UInt32 {
    UInt32(p[offset]) | UInt32(p[offset + 1]) << 8 | UInt32(p[offset + 2]) << 16 | UInt32(p[offset + 3]) << 24
}

// Q5_0: d, 32 high bits, nibbles as Q4_0; x = d * (q - 16) with q the 5-bit value.
private func dequantizeQ5_0(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0)
    let qh = highBits(p, 2)
    for j in 0..<16 {
        let lo = Int(p[6 + j] & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
        let hi = Int(p[6 + j] >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
        y[j] = Float(lo - 16) * d
        y[j + 16] = Float(hi - 16) * d
    }
}

// Q5_1: d, m, 32 high bits, nibbles; x = d * q + m.
private func dequantizeQ5_1(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0), m = half(p, 2)
    let qh = highBits(p, 4)
    for j in 0..<16 {
        let lo = UInt32(p[8 + j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
        let hi = UInt32(p[8 + j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
        y[j] = Float(lo) * d + m
        y[j + 16] = Float(hi) * d + m
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..<8) of a Q4_K/Q5_K block, packed into 12 bytes: sub-blocks 0..<4
/// keep theirs in the low 6 bits of bytes `j` and `j + 4`; sub-blocks 4..<8 combine a nibble of byte `j + 4` with the
/// top two bits of bytes `j - 4` (scale) and `j` (minimum).
@inline(__always)
private func scaleAndMin(_ s: UnsafePointer<UInt8>, _ j: Int) -> (Float, Float) {
    if j < 4 { return (Float(s[j] & 63), Float(s[j + 4] & 63)) }
    let scale = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4
    let minimum = (s[j + 4] >> 4) | (s[j] >> 6) << 4
    return (Float(scale), Float(minimum))
}

// Q4_K: d, dmin, 12 bytes of scales/mins, 128 bytes of nibbles. Each 64 weights take 32 bytes: low nibbles are the
// first sub-block of 32, high nibbles the second; x = d * scale * q - dmin * min.
private func dequantizeQ4_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0), dmin = half(p, 2)
    let scales = p + 4, qs = p + 16
    for chunk in 0..<4 {
        let (sc0, m0) = scaleAndMin(scales, 2 * chunk)
        let (sc1, m1) = scaleAndMin(scales, 2 * chunk + 1)
        let d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1
        let q = qs + 32 * chunk, out = y + 64 * chunk
        for l in 0..<32 {
            out[l] = d0 * Float(q[l] & 0x0F) - min0
            out[l + 32] = d1 * Float(q[l] >> 4) - min1
        }
    }
}

// Q5_K: as Q4_K plus 32 bytes of fifth bits: bit `2 * chunk` of byte `l` extends weight `l` of the chunk's first
// sub-block, bit `2 * chunk + 1` its second.
private func dequantizeQ5_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 0), dmin = half(p, 2)
    let scales = p + 4, qh = p + 16, qs = p + 48
    for chunk in 0..<4 {
        let (sc0, m0) = scaleAndMin(scales, 2 * chunk)
        let (sc1, m1) = scaleAndMin(scales, 2 * chunk + 1)
        let d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1
        let q = qs + 32 * chunk, out = y + 64 * chunk
        let bit0 = UInt8(1) << UInt8(2 * chunk), bit1 = UInt8(2) << UInt8(2 * chunk)
        for l in 0..<32 {
            let lo = (q[l] & 0x0F) | (qh[l] & bit0 != 0 ? 16 : 0)
            let hi = (q[l] >> 4) | (qh[l] & bit1 != 0 ? 16 : 0)
            out[l] = d0 * Float(lo) - min0
            out[l + 32] = d1 * Float(hi) - min1
        }
    }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed 8-bit scales, then d. Each half of 128
// weights uses 64 low bytes and 32 high bytes: weights l, l + 32, l + 64, l + 96 (l < 32) take the low nibble of
// low byte l, the low nibble of l + 32, the high nibble of l, the high nibble of l + 32, topped with bits 0-1, 2-3,
// 4-5, 6-7 of high byte l; each 16 weights share a scale; x = d * scale * (q - 32).
private func dequantizeQ6_K(_ p: UnsafePointer<UInt8>, _ y: UnsafeMutablePointer<Float>) {
    let d = half(p, 208)
    for halfBlock in 0..<2 {
        let ql = p + 64 * halfBlock, qh = p + 128 + 32 * halfBlock
        let sc = UnsafeRawPointer(p + 192 + 8 * halfBlock).assumingMemoryBound(to: Int8.self)
        let out = y + 128 * halfBlock
        for l in 0..<32 {
            let group = l / 16
            let q0 = Int((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32
            let q1 = Int((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32
            let q2 = Int((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32
            let q3 = Int((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32
            out[l] = d * Float(sc[group]) * Float(q0)
            out[l + 32] = d * Float(sc[group + 2]) * Float(q1)
            out[l + 64] = d * Float(sc[group + 4]) * Float(q2)
            out[l + 96] = d * Float(sc[group + 6]) * Float(q3)
        }
    }
}
