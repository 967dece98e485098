/// Vectorised elementary functions for the CPU kernels.
///
/// The softmax over a 32k vocabulary evaluates tens of millions of exponentials per step; scalar `expf` would cost
/// as much as the LM-head matrix product, so the hot paths use this 8-wide polynomial instead (Cephes' `expf`
/// range reduction and minimax polynomial, max relative error about 2 ulp over the clamped range).
typealias Vec = SIMD8<Float>

@inline(__always)
func vexp(_ input: Vec) -> Vec {
    // Comparisons and blends, not `clamped`: its generic lane loop handles NaN per lane and does not vectorise.
    var x = input.replacing(with: -87.33, where: input .< -87.33)
    x.replace(with: 88.72, where: x .> 88.72)
    // Round x/ln2 to an integer by adding and subtracting 1.5 * 2^23: baseline x86-64 (SSE2) has no vector round
    // instruction, and `rounded()` on SIMD types falls back to a libm call per lane. The same sum holds n as an
    // integer in its low mantissa bits, which gives the exponent without a float-to-int conversion.
    let magic = Vec(repeating: 12_582_912)
    let shifted = x * 1.442_695_04 + magic
    let n = shifted - magic
    // Cody-Waite: ln 2 split into a part exact in float and a correction.
    var r = x - n * 0.693_359_375
    r = r + n * 2.121_944_40e-4
    var p = Vec(repeating: 1.987_569_150_0e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    p = p * (r * r) + r + 1
    let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let exponent = (integer &+ 127) &<< 23
    return p * unsafeBitCast(exponent, to: Vec.self)
}

@inline(__always)
func vsigmoid(_ x: Vec) -> Vec {
    1 / (1 + vexp(-x))
}

/// `exp` for single values, with the same polynomial as `vexp` so scalar tails match vector bodies.
@inline(__always)
func sexp(_ x: Float) -> Float {
    vexp(Vec(repeating: x))[0]
}

@inline(__always)
func loadVec(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

@inline(__always)
func storeVec(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}

/// Lane-wise maximum by compare and blend (see `vexp` on why not `pointwiseMax`).
@inline(__always)
func vmax(_ a: Vec, _ b: Vec) -> Vec {
    a.replacing(with: b, where: b .> a)
}

/// The largest of `length` floats, 8 lanes at a time.
@inline(__always)
func rowMax(_ row: UnsafePointer<Float>, length: Int) -> Float {
    var maxes = Vec(repeating: -.infinity)
    var j = 0
    while j + 8 <= length {
        maxes = vmax(maxes, loadVec(row + j))
        j += 8
    }
    var maximum = maxes.max()
    while j < length {
        maximum = max(maximum, row[j])
        j += 1
    }
    return maximum
}

/// `row[j] *= factor` for `j < length`.
@inline(__always)
public func scaleInPlace(_ row: UnsafeMutablePointer<Float>, length: Int, by factor: Float) {
    var j = 0
    while j + 8 <= length {
        storeVec(loadVec(row + j) * factor, row + j)
        j += 8
    }
    while j < length {
        row[j] *= factor
        j += 1
    }
}

/// The sum of `length` floats, 8 lanes at a time.
@inline(__always)
func rowSum(_ row: UnsafePointer<Float>, length: Int) -> Float {
    var acc = Vec()
    var j = 0
    while j + 8 <= length {
        acc += loadVec(row + j)
        j += 8
    }
    var tail: Float = 0
    while j < length {
        tail += row[j]
        j += 1
    }
    return acc.sum() + tail
}

/// `out[j] = exp((x[j] - shift) * scale)` for `j < length`, 8 lanes at a time with `vexp` (`x` and `out` may be one
/// buffer); returns their sum. The sum runs in float lanes added into a double every 512 values, so that a 49k
/// vocabulary's sum does not drift by 1e-3 as one float sum does.
///
/// With `exactZeros`, an argument below `vexp`'s range (-87.33, where `expf` is under 1.2e-38) gives exactly 0 rather
/// than the clamp's 1.2e-38, so that a logit of `-inf` (an id outside a subset head) keeps probability 0. Callers
/// whose scores are all finite leave it off and skip the blend; the flag is a constant at every inlined call.
@inline(__always)
func expShifted(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, length: Int, shift: Float,
                scale: Float = 1, exactZeros: Bool = false) -> Double {
    let low = Vec(repeating: -87.33)
    var total: Double = 0
    var j = 0
    while j + 8 <= length {
        var lanes = Vec()
        let end = min(length, j + 512)
        while j + 8 <= end {
            let argument = (loadVec(x + j) - shift) * scale
            var e = vexp(argument)
            if exactZeros { e.replace(with: 0, where: argument .< low) }
            storeVec(e, out + j)
            lanes += e
            j += 8
        }
        total += Double(lanes.sum())
    }
    while j < length {
        let argument = (x[j] - shift) * scale
        out[j] = exactZeros && argument < -87.33 ? 0 : sexp(argument)
        total += Double(out[j])
        j += 1
    }
    return total
}

/// `row[j] = exp(row[j] - shift)` for `j < length`; returns the sum (scores that are all finite: attention, the loss).
@inline(__always)
func expInPlace(_ row: UnsafeMutablePointer<Float>, length: Int, shift: Float) -> Float {
    Float(expShifted(row, into: row, length: length, shift: shift))
}

/// The numerators of a softmax at temperature `1 / scale` for a sampler: `out[i] = exp((x[i] - max x) * scale)` over
/// `count` floats and their sum in double (`expShifted` with exact zeros: a logit of `-inf` keeps probability 0).
/// Returns nil for `count == 0` or when no value is above `-inf`.
///
/// Why not `expf` per value: it took about 0.2 ms per sampled token over SmolLM2's 49,152 ids (perf on `speculate`:
/// `Sampler.sample` and `__expf_fma` 5.6% of the run, half of a Q8_0 draft's step).
public func softmaxNumerators(_ x: UnsafePointer<Float>, count: Int, scale: Float,
                              into out: UnsafeMutablePointer<Float>) -> Double? {
    guard count > 0 else { return nil }
    let maximum = rowMax(x, length: count)
    guard maximum > -.infinity else { return nil }
    return expShifted(x, into: out, length: count, shift: maximum, scale: scale, exactZeros: true)
}
