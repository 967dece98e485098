/// GGUF's metadata value type ids (`gguf_metadata_value_type` in GGUF's `docs/gguf.md`).
public enum GGUFValueType: UInt32, CaseIterable, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8
    case array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value of a fixed-size type; nil for strings and arrays.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }
}

/// A metadata value of a GGUF file, with its exact stored type so that a file written back is the same file.
/// Arrays are typed (`GGUFArray`): a vocabulary's tokens, scores and merges are large.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFArray)

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// Any integer type, when it fits an Int64.
    public var integer: Int64? {
        switch self {
        case .uint8(let v): return Int64(v)
        case .int8(let v): return Int64(v)
        case .uint16(let v): return Int64(v)
        case .int16(let v): return Int64(v)
        case .uint32(let v): return Int64(v)
        case .int32(let v): return Int64(v)
        case .uint64(let v): return v <= UInt64(Int64.max) ? Int64(v) : nil
        case .int64(let v): return v
        default: return nil
        }
    }
    /// Either float type, widened.
    public var float: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return nil
        }
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: GGUFArray? { if case .array(let a) = self { return a }; return nil }
    /// A string array's elements.
    public var strings: [String]? { if case .array(.string(let s)) = self { return s }; return nil }
    /// An integer array's elements as Int64 (a uint64 element above Int64.max wraps, as llama.cpp's casts do).
    public var integers: [Int64]? { array?.integers }
    /// A float array's elements, widened.
    public var floats: [Double]? { array?.floats }
}

/// A GGUF metadata array: all elements of one type. An array of arrays holds arrays of any element type each.
public enum GGUFArray: Equatable, Sendable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16]), uint32([UInt32]), int32([Int32])
    case uint64([UInt64]), int64([Int64]), float32([Float]), float64([Double]), bool([Bool]), string([String])
    case array([GGUFArray])

    public var elementType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    public var count: Int {
        switch self {
        case .uint8(let a): return a.count
        case .int8(let a): return a.count
        case .uint16(let a): return a.count
        case .int16(let a): return a.count
        case .uint32(let a): return a.count
        case .int32(let a): return a.count
        case .uint64(let a): return a.count
        case .int64(let a): return a.count
        case .float32(let a): return a.count
        case .float64(let a): return a.count
        case .bool(let a): return a.count
        case .string(let a): return a.count
        case .array(let a): return a.count
        }
    }

    /// Integer elements as Int64; nil for non-integer arrays.
    public var integers: [Int64]? {
        switch self {
        case .uint8(let a): return a.map { Int64($0) }
        case .int8(let a): return a.map { Int64($0) }
        case .uint16(let a): return a.map { Int64($0) }
        case .int16(let a): return a.map { Int64($0) }
        case .uint32(let a): return a.map { Int64($0) }
        case .int32(let a): return a.map { Int64($0) }
        case .uint64(let a): return a.map { Int64(truncatingIfNeeded: $0) }
        case .int64(let a): return a
        default: return nil
        }
    }

    /// Float elements widened to Double; nil for non-float arrays.
    public var floats: [Double]? {
        switch self {
        case .float32(let a): return a.map { Double($0) }
        case .float64(let a): return a
        default: return nil
        }
    }
}
