import DraftFormats

// Dequantization of whole weight rows to fp32, for every ggml block type: the embedding lookup, the fp32 panels of
// the large-m product, and the per-row path of the small-m product for the types without a fused dot.
// Block layouts are ggml's (`ggml-common.h`); each block is decoded from its bytes, never from an expanded copy.

@inline(__always)
func loadHalf(_ p: UnsafeRawPointer, _ offset: Int = 0) -> Float {
    Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

@inline(__always)
private func nibbleFloats(_ word: SIMD4<UInt32>, shift: UInt32) -> SIMD4<Float> {
    // Small integers to float by OR-ing them into the mantissa of 2^23 and subtracting 2^23: the generic SIMD
    // integer-to-float initialisers are lane loops, this is two vector instructions.
    let bits = ((word &>> shift) & 0xF) | 0x4B00_0000
    return unsafeBitCast(bits, to: SIMD4<Float>.self) - 8_388_608
}

/// Writes the 32 values of a block of 4-bit weights `(q - offset) * d + m` (`qs` its 16 bytes: element `j` in the
/// low nibble of byte `j`, element `j + 16` in the high nibble), in ggml's order of operations so that values match
/// its dequantizer bit for bit.
@inline(__always)
private func storeNibbleBlock(_ qs: UnsafeRawPointer, offset: Float, d: Float, m: Float,
                              _ out: UnsafeMutablePointer<Float>) {
    let raw = UnsafeMutableRawPointer(out)
    for w in 0..<4 {
        let word = SIMD4<UInt32>(repeating: qs.loadUnaligned(fromByteOffset: w * 4, as: UInt32.self))
        // Lane k takes byte k of the word.
        let spread = word &>> SIMD4<UInt32>(0, 8, 16, 24)
        let lo = (nibbleFloats(spread, shift: 0) - offset) * d + m
        let hi = (nibbleFloats(spread, shift: 4) - offset) * d + m
        raw.storeBytes(of: lo, toByteOffset: w * 16, as: SIMD4<Float>.self)
        raw.storeBytes(of: hi, toByteOffset: 64 + w * 16, as: SIMD4<Float>.self)
    }
}

/// Dequantizes `columns` weights of one row (`columns` a multiple of `type.blockElements`) into `out`.
func dequantizeRow(_ type: GGMLType, _ row: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>, columns: Int) {
    let blocks = columns / type.blockElements
    switch type {
    case .f32:
        out.update(from: row.assumingMemoryBound(to: Float.self), count: columns)
    case .f16:
        for i in 0..<columns { out[i] = loadHalf(row, 2 * i) }
    case .bf16:
        for i in 0..<columns {
            out[i] = Float(bitPattern: UInt32(row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
        }
    case .q4_0:
        for b in 0..<blocks {
            let p = row + b * 18
            storeNibbleBlock(p + 2, offset: 8, d: loadHalf(p), m: 0, out + b * 32)
        }
    case .q4_1:
        for b in 0..<blocks {
            let p = row + b * 20
            storeNibbleBlock(p + 4, offset: 0, d: loadHalf(p), m: loadHalf(p, 2), out + b * 32)
        }
    case .q5_0, .q5_1:
        let hasMin = type == .q5_1
        let size = type.blockBytes
        for b in 0..<blocks {
            let p = row + b * size
            let d = loadHalf(p)
            let m: Float = hasMin ? loadHalf(p, 2) : 0
            let offset: Float = hasMin ? 0 : 16
            let hOffset = hasMin ? 4 : 2
            let qh = p.loadUnaligned(fromByteOffset: hOffset, as: UInt32.self)
            let qs = p + hOffset + 4
            let o = out + b * 32
            for j in 0..<16 {
                let byte = UInt32(qs.load(fromByteOffset: j, as: UInt8.self))
                let lo = (byte & 0xF) | (((qh >> UInt32(j)) & 1) << 4)
                let hi = (byte >> 4) | (((qh >> UInt32(j + 16)) & 1) << 4)
                o[j] = (Float(lo) - offset) * d + m
                o[j + 16] = (Float(hi) - offset) * d + m
            }
        }
    case .q8_0:
        for b in 0..<blocks {
            let p = row + b * 34
            let d = loadHalf(p)
            let o = out + b * 32
            for j in 0..<32 { o[j] = Float(p.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
        }
    case .q4_K, .q5_K:
        let high = type == .q5_K
        let size = type.blockBytes
        for b in 0..<blocks {
            let p = row + b * size
            let d = loadHalf(p), dmin = loadHalf(p, 2)
            let scales = p + 4
            let qh = p + 16
            let qs = p + (high ? 48 : 16)
            for pair in 0..<4 {
                let (s1, m1) = kQuantScaleMin(scales, 2 * pair)
                let (s2, m2) = kQuantScaleMin(scales, 2 * pair + 1)
                let d1 = d * Float(s1), min1 = dmin * Float(m1)
                let d2 = d * Float(s2), min2 = dmin * Float(m2)
                let o = out + b * 256 + pair * 64
                let q = qs + pair * 32
                for l in 0..<32 {
                    let byte = q.load(fromByteOffset: l, as: UInt8.self)
                    var lo = Int(byte & 0xF), hi = Int(byte >> 4)
                    if high {
                        let h = qh.load(fromByteOffset: l, as: UInt8.self)
                        lo += Int((h >> UInt8(2 * pair)) & 1) << 4
                        hi += Int((h >> UInt8(2 * pair + 1)) & 1) << 4
                    }
                    o[l] = d1 * Float(lo) - min1
                    o[l + 32] = d2 * Float(hi) - min2
                }
            }
        }
    case .q6_K:
        for b in 0..<blocks {
            let p = row + b * 210
            let ql = p, qh = p + 128, sc = p + 192
            let d = loadHalf(p, 208)
            for half in 0..<2 {
                let l0 = ql + half * 64, h0 = qh + half * 32, s0 = sc + half * 8
                let o = out + b * 256 + half * 128
                for l in 0..<32 {
                    let a = l0.load(fromByteOffset: l, as: UInt8.self)
                    let c = l0.load(fromByteOffset: l + 32, as: UInt8.self)
                    let h = h0.load(fromByteOffset: l, as: UInt8.self)
                    let q1 = Int((a & 0xF) | ((h & 3) << 4)) - 32
                    let q2 = Int((c & 0xF) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int((c >> 4) | (((h >> 6) & 3) << 4)) - 32
                    let s = l / 16
                    o[l] = d * Float(s0.load(fromByteOffset: s, as: Int8.self)) * Float(q1)
                    o[l + 32] = d * Float(s0.load(fromByteOffset: s + 2, as: Int8.self)) * Float(q2)
                    o[l + 64] = d * Float(s0.load(fromByteOffset: s + 4, as: Int8.self)) * Float(q3)
                    o[l + 96] = d * Float(s0.load(fromByteOffset: s + 6, as: Int8.self)) * Float(q4)
                }
            }
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..<8) of a Q4_K/Q5_K super-block, packed in its 12 scale bytes:
/// sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7 (minimums), sub-blocks 4-7 split between the
/// nibbles of bytes 8-11 and the top 2 bits of bytes 0-7.
@inline(__always)
func kQuantScaleMin(_ scales: UnsafeRawPointer, _ j: Int) -> (UInt8, UInt8) {
    let s = { (i: Int) in scales.load(fromByteOffset: i, as: UInt8.self) }
    if j < 4 { return (s(j) & 63, s(j + 4) & 63) }
    return ((s(j + 4) & 0xF) | ((s(j - 4) >> 6) << 4), (s(j + 4) >> 4) | ((s(j) >> 6) << 4))
}
