/// Reference quantization from fp32 to the ggml types SwiftDraft writes (F32, F16, BF16, Q8_0), bit-for-bit as
/// ggml's round-to-nearest reference (and `gguf.quants.quantize`) does. Used by the GGUF writer and `export`.
public enum Quantizer {
    /// The types `quantize` can produce.
    public static let supported: [GGMLType] = [.f32, .f16, .bf16, .q8_0]

    /// Quantizes `count` floats from `source` into `destination` (`type.byteCount(elements: count)` bytes).
    /// Throws when the type has no quantizer here or `count` is not a whole number of blocks.
    public static func quantize(_ type: GGMLType, _ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer,
                                count: Int) throws {
        guard supported.contains(type) else {
            throw FormatError("cannot quantize to \(type.name) (supported: \(supported.map(\.name).joined(separator: ", ")))")
        }
        guard count >= 0, count % type.blockElements == 0 else {
            throw FormatError("cannot quantize \(count) values to \(type.name): not a whole number of blocks of \(type.blockElements)")
        }
        switch type {
        case .f32:
            destination.copyMemory(from: source, byteCount: 4 * count)
        case .f16:
            let out = destination.bindMemory(to: UInt16.self, capacity: count)
            for i in 0..<count { out[i] = floatToHalf(source[i]) }
        case .bf16:
            let out = destination.bindMemory(to: UInt16.self, capacity: count)
            for i in 0..<count { out[i] = floatToBF16(source[i]) }
        case .q8_0:
            let out = destination.assumingMemoryBound(to: UInt8.self)
            for b in 0..<(count / 32) { quantizeQ8_0(source + 32 * b, out + 34 * b) }
        default:
            break  // refused above
        }
    }

    /// Quantizes `values` into a new byte array.
    public static func quantize(_ type: GGMLType, _ values: [Float]) throws -> [UInt8] {
        guard let bytes = type.byteCount(elements: values.count) else {
            throw FormatError("cannot quantize \(values.count) values to \(type.name): not a whole number of blocks of \(type.blockElements)")
        }
        var out = [UInt8](repeating: 0, count: bytes)
        try values.withUnsafeBufferPointer { v in
            try out.withUnsafeMutableBytes { o in
                guard let src = v.baseAddress, let dst = o.baseAddress else { return }
                try quantize(type, src, into: dst, count: values.count)
            }
        }
        return out
    }

    /// Q8_0: `d = max|x| / 127`, `q = round(x / d)` half away from zero (computed as `x * (1/d)` in float32, like
    /// ggml), d stored as binary16.
    private static func quantizeQ8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        let bits = floatToHalf(d)
        out[0] = UInt8(truncatingIfNeeded: bits)
        out[1] = UInt8(truncatingIfNeeded: bits >> 8)
        for j in 0..<32 {
            let q = (x[j] * id).rounded(.toNearestOrAwayFromZero)
            // A NaN weight has no integer value: store 0 rather than trap in the conversion.
            out[2 + j] = UInt8(bitPattern: q.isNaN ? 0 : Int8(max(-128, min(127, q))))
        }
    }
}

/// Quantizes `count` floats to `type` (F32, F16, BF16 or Q8_0): `Quantizer.quantize`.
public func quantize(_ type: GGMLType, _ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer,
                     count: Int) throws {
    try Quantizer.quantize(type, source, into: destination, count: count)
}
