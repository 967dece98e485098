// Fused dequantize-and-dot kernels for the small-m product (decode) with Q4_0/Q4_1 and Q8_0 weights.
//
// Four weight rows are decoded at once into one 16-lane vector (4 lanes per row, one 32-bit word of packed weights
// per lane); each shift of those words exposes one weight per lane, turned into a float by OR-ing it into the
// mantissa of 2^23. The activations are rearranged once per product so that lane `k` of every step meets the
// activation of the weight it holds: no shuffles in the inner loop, and the weights never leave registers as floats.

import CQuantDot

// Accumulations use `addingProduct`, which lowers to one fused multiply-add (Swift never contracts `a += b * c`).

/// Lane-by-lane float from small non-negative integers (< 2^23): the mantissa trick, two vector instructions
/// (the generic SIMD integer-to-float initialisers compile to per-lane loops).
@inline(__always)
private func smallIntegers(_ bits: SIMD16<UInt32>) -> SIMD16<Float> {
    unsafeBitCast(bits | 0x4B00_0000, to: SIMD16<Float>.self) - 8_388_608
}

/// Prefetches the block at `p` of the 4 rows `SD_PREFETCH_ROWS` rows ahead (quant_dot.h says why).
@inline(__always)
private func prefetchAhead(_ p: UnsafeRawPointer, _ rowBytes: Int) {
    let ahead = p + Int(SD_PREFETCH_ROWS) * rowBytes
    sd_prefetch(ahead)
    sd_prefetch(ahead + rowBytes)
    sd_prefetch(ahead + 2 * rowBytes)
    sd_prefetch(ahead + 3 * rowBytes)
}

@inline(__always)
private func quad(_ v: SIMD4<Float>) -> SIMD16<Float> {
    SIMD16(lowHalf: SIMD8(lowHalf: v, highHalf: v), highHalf: SIMD8(lowHalf: v, highHalf: v))
}

@inline(__always)
private func spread(_ a: Float, _ b: Float, _ c: Float, _ d: Float) -> SIMD16<Float> {
    SIMD16(lowHalf: SIMD8(lowHalf: SIMD4(repeating: a), highHalf: SIMD4(repeating: b)),
           highHalf: SIMD8(lowHalf: SIMD4(repeating: c), highHalf: SIMD4(repeating: d)))
}

@inline(__always)
private func words4(_ p: UnsafeRawPointer, _ rowBytes: Int, _ offset: Int) -> SIMD16<UInt32> {
    SIMD16(lowHalf: SIMD8(lowHalf: p.loadUnaligned(fromByteOffset: offset, as: SIMD4<UInt32>.self),
                          highHalf: p.loadUnaligned(fromByteOffset: rowBytes + offset, as: SIMD4<UInt32>.self)),
           highHalf: SIMD8(lowHalf: p.loadUnaligned(fromByteOffset: 2 * rowBytes + offset, as: SIMD4<UInt32>.self),
                           highHalf: p.loadUnaligned(fromByteOffset: 3 * rowBytes + offset, as: SIMD4<UInt32>.self)))
}

@inline(__always)
private func rowSums(_ v: SIMD16<Float>) -> SIMD4<Float> {
    return SIMD4(v[0] + v[1] + v[2] + v[3], v[4] + v[5] + v[6] + v[7],
                 v[8] + v[9] + v[10] + v[11], v[12] + v[13] + v[14] + v[15])
}

/// Geometry of a 4-bit block type: Q4_0 (`d`, 16 bytes; value `d * (q - 8)`) or Q4_1 (`d`, `m`, 16 bytes;
/// value `d * q + m`).
struct NibbleLayout {
    let blockBytes: Int
    let quantsOffset: Int
    let hasMinimum: Bool

    static let q4_0 = NibbleLayout(blockBytes: 18, quantsOffset: 2, hasMinimum: false)
    static let q4_1 = NibbleLayout(blockBytes: 20, quantsOffset: 4, hasMinimum: true)
}

/// Rearranges one activation row for the 4-bit kernels: per block, 8 steps of 4 floats (step `s`, word `w` holds
/// the element in nibble `s` of word `w` of the 16 quant bytes), and the block's sum (for the minimum term).
func prepareNibbleActivations(_ x: UnsafePointer<Float>, blocks: Int, into perm: UnsafeMutablePointer<Float>,
                              sums: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        let xb = x + b * 32
        let pb = perm + b * 32
        for s in 0..<8 {
            for w in 0..<4 {
                pb[s * 4 + w] = xb[w * 4 + s / 2 + (s % 2) * 16]
            }
        }
        var sum: Float = 0
        for j in 0..<32 { sum += xb[j] }
        sums[b] = sum
    }
}

/// Rearranges one activation row for the Q8_0 kernels: per block, 4 steps of 8 floats (step `s`, word `w` holds
/// element `4 w + s`).
func prepareByteActivations(_ x: UnsafePointer<Float>, blocks: Int, into perm: UnsafeMutablePointer<Float>) {
    for b in 0..<blocks {
        for s in 0..<4 {
            for w in 0..<8 {
                perm[b * 32 + s * 8 + w] = x[b * 32 + w * 4 + s]
            }
        }
    }
}

/// Dot products of 4 consecutive 4-bit rows (from `w`, `rowBytes` apart) with `xCount` (1...4) prepared activation
/// rows; `out[i]` gets the 4 results of activation row `i`.
@inline(__always)
func nibbleDot4Rows(_ w: UnsafeRawPointer, rowBytes: Int, blocks: Int, layout: NibbleLayout,
                    perms: UnsafePointer<UnsafePointer<Float>>, sums: UnsafePointer<UnsafePointer<Float>>,
                    xCount: Int, out: UnsafeMutablePointer<SIMD4<Float>>) {
    if xCount == 1 {
        out[0] = nibbleDot4Rows1(w, rowBytes: rowBytes, blocks: blocks, layout: layout, perm: perms[0], sums: sums[0])
        return
    }
    // Four activation rows share each decoded weight vector; missing ones repeat the last (results dropped).
    let p0 = UnsafeRawPointer(perms[0]), p1 = UnsafeRawPointer(perms[min(1, xCount - 1)])
    let p2 = UnsafeRawPointer(perms[min(2, xCount - 1)]), p3 = UnsafeRawPointer(perms[min(3, xCount - 1)])
    let s0 = sums[0], s1 = sums[min(1, xCount - 1)], s2 = sums[min(2, xCount - 1)], s3 = sums[min(3, xCount - 1)]
    var t0 = SIMD16<Float>(), t1 = SIMD16<Float>(), t2 = SIMD16<Float>(), t3 = SIMD16<Float>()
    var m0 = SIMD16<Float>(), m1 = SIMD16<Float>(), m2 = SIMD16<Float>(), m3 = SIMD16<Float>()
    for b in 0..<blocks {
        let p = w + b * layout.blockBytes
        prefetchAhead(p, rowBytes)
        var v = words4(p, rowBytes, layout.quantsOffset)
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        let off = b * 128
        for s in 0..<8 {
            let f = smallIntegers(v & 0xF)
            v &>>= 4
            let o = off + s * 16
            a0 = a0.addingProduct(f, quad(p0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)))
            a1 = a1.addingProduct(f, quad(p1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)))
            a2 = a2.addingProduct(f, quad(p2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)))
            a3 = a3.addingProduct(f, quad(p3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)))
        }
        let d0 = loadHalf(p), d1 = loadHalf(p, rowBytes), d2 = loadHalf(p, 2 * rowBytes), d3 = loadHalf(p, 3 * rowBytes)
        let dv = spread(d0, d1, d2, d3)
        let mv: SIMD16<Float>
        if layout.hasMinimum {
            mv = spread(loadHalf(p, 2), loadHalf(p, rowBytes + 2), loadHalf(p, 2 * rowBytes + 2),
                        loadHalf(p, 3 * rowBytes + 2)) * 0.25
        } else {
            mv = dv * -2  // -8 d, spread over the row's 4 lanes
        }
        t0 += a0 * dv; m0 += mv * s0[b]
        t1 += a1 * dv; m1 += mv * s1[b]
        t2 += a2 * dv; m2 += mv * s2[b]
        t3 += a3 * dv; m3 += mv * s3[b]
    }
    out[0] = rowSums(t0 + m0)
    if xCount > 1 { out[1] = rowSums(t1 + m1) }
    if xCount > 2 { out[2] = rowSums(t2 + m2) }
    if xCount > 3 { out[3] = rowSums(t3 + m3) }
}

@inline(__always)
private func nibbleDot4Rows1(_ w: UnsafeRawPointer, rowBytes: Int, blocks: Int, layout: NibbleLayout,
                             perm: UnsafePointer<Float>, sums: UnsafePointer<Float>) -> SIMD4<Float> {
    let px = UnsafeRawPointer(perm)
    var total = SIMD16<Float>(), minimums = SIMD16<Float>()
    for b in 0..<blocks {
        let p = w + b * layout.blockBytes
        prefetchAhead(p, rowBytes)
        var v = words4(p, rowBytes, layout.quantsOffset)
        var acc = SIMD16<Float>()
        let off = b * 128
        for s in 0..<8 {
            let f = smallIntegers(v & 0xF)
            v &>>= 4
            acc = acc.addingProduct(f, quad(px.loadUnaligned(fromByteOffset: off + s * 16, as: SIMD4<Float>.self)))
        }
        let dv = spread(loadHalf(p), loadHalf(p, rowBytes), loadHalf(p, 2 * rowBytes), loadHalf(p, 3 * rowBytes))
        total += acc * dv
        if layout.hasMinimum {
            minimums += spread(loadHalf(p, 2), loadHalf(p, rowBytes + 2), loadHalf(p, 2 * rowBytes + 2),
                               loadHalf(p, 3 * rowBytes + 2)) * (0.25 * sums[b])
        } else {
            minimums += dv * (-2 * sums[b])
        }
    }
    return rowSums(total + minimums)
}

@inline(__always)
private func words2x8(_ p: UnsafeRawPointer, _ rowBytes: Int) -> SIMD16<UInt32> {
    SIMD16(lowHalf: p.loadUnaligned(fromByteOffset: 2, as: SIMD8<UInt32>.self),
           highHalf: p.loadUnaligned(fromByteOffset: rowBytes + 2, as: SIMD8<UInt32>.self))
}

@inline(__always)
private func signedBytes(_ v: SIMD16<UInt32>, _ s: UInt32) -> SIMD16<Float> {
    // Byte `s` of each word as a signed value, then to float with the mantissa trick offset by 2^22 for the sign.
    let signed = unsafeBitCast(v &<< (24 - 8 * s), to: SIMD16<Int32>.self) &>> 24
    return unsafeBitCast(signed &+ 0x4B40_0000, to: SIMD16<Float>.self) - 12_582_912
}

/// Dot products of 4 consecutive Q8_0 rows with one prepared activation row.
@inline(__always)
func byteDot4Rows(_ w: UnsafeRawPointer, rowBytes: Int, blocks: Int, perm: UnsafePointer<Float>) -> SIMD4<Float> {
    let px = UnsafeRawPointer(perm)
    var top = SIMD16<Float>(), bottom = SIMD16<Float>()
    for b in 0..<blocks {
        let p = w + b * 34
        prefetchAhead(p, rowBytes)
        let v01 = words2x8(p, rowBytes), v23 = words2x8(p + 2 * rowBytes, rowBytes)
        var a01 = SIMD16<Float>(), a23 = SIMD16<Float>()
        for s in 0..<4 {
            let x8 = px.loadUnaligned(fromByteOffset: b * 128 + s * 32, as: SIMD8<Float>.self)
            let x16 = SIMD16(lowHalf: x8, highHalf: x8)
            a01 = a01.addingProduct(signedBytes(v01, UInt32(s)), x16)
            a23 = a23.addingProduct(signedBytes(v23, UInt32(s)), x16)
        }
        top += a01 * SIMD16(lowHalf: SIMD8(repeating: loadHalf(p)), highHalf: SIMD8(repeating: loadHalf(p, rowBytes)))
        bottom += a23 * SIMD16(lowHalf: SIMD8(repeating: loadHalf(p, 2 * rowBytes)),
                               highHalf: SIMD8(repeating: loadHalf(p, 3 * rowBytes)))
    }
    return SIMD4(top.lowHalf.sum(), top.highHalf.sum(), bottom.lowHalf.sum(), bottom.highHalf.sum())
}

/// Dot of `count` floats, 16 lanes (the per-row path of the types without a fused kernel).
@inline(__always)
func dotFloats(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
    var i = 0
    while i + 32 <= count {
        acc0 += ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
        acc1 += ra.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self)
        i += 32
    }
    var tail: Float = 0
    while i < count {
        tail += a[i] * b[i]
        i += 1
    }
    return (acc0 + acc1).sum() + tail
}
