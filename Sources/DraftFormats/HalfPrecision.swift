/// IEEE binary16 and bfloat16 conversions, bit patterns in and out, as ggml stores them.

/// A binary16 bit pattern widened to Float (exact).
@inline(__always)
public func halfToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

/// A Float rounded to the nearest binary16, ties to even (as numpy's `astype(float16)` and ggml's converters do);
/// overflow becomes infinity.
@inline(__always)
public func floatToHalf(_ x: Float) -> UInt16 { Float16(x).bitPattern }

/// A bfloat16 bit pattern widened to Float (exact: the top half of a float32).
@inline(__always)
public func bf16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

/// A Float rounded to the nearest bfloat16, ties to even, NaNs made quiet (ggml's `ggml_compute_fp32_to_bf16`).
@inline(__always)
public func floatToBF16(_ x: Float) -> UInt16 {
    var n = x.bitPattern
    if n & 0x7FFF_FFFF > 0x7F80_0000 { n = (n & 0xFFFF_0000) | 0x0040_0000 }
    return UInt16(truncatingIfNeeded: (UInt64(n) + UInt64(0x7FFF + ((n >> 16) & 1))) >> 16)
}
