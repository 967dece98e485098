import Foundation

/// The header and key/value metadata of a GGUF file (versions 2 and 3, little-endian), parsed from its bytes without
/// touching the tensor infos or data: what a tokenizer needs. Layout: GGUF's `docs/gguf.md` — magic `GGUF`, u32
/// version, u64 tensor count, u64 metadata count, then the key/value pairs.
public struct GGUFMetadata: Sendable {
    public let version: UInt32
    /// The tensor count the header declares (the tensor infos follow `endOffset`).
    public let tensorCount: UInt64
    public let values: [String: GGUFValue]
    /// The keys in file order.
    public let keys: [String]
    /// The byte offset just past the last key/value pair.
    public let endOffset: Int

    public subscript(key: String) -> GGUFValue? { values[key] }

    /// Parses the header and every key/value pair; truncation, an unknown value type, a duplicate key or an
    /// implausible count is a `FormatError` naming `path` and the byte offset.
    public init(bytes: UnsafeRawBufferPointer, path: String) throws {
        var r = GGUFCursor(bytes: bytes, path: path)
        guard bytes.count >= 4, bytes.loadUnaligned(as: UInt32.self) == GGUFCursor.magic else {
            throw FormatError("\(path): not a GGUF file (expected the magic 'GGUF' at byte 0)")
        }
        r.offset = 4
        version = try r.u32("the version")
        guard version == 2 || version == 3 else {
            throw FormatError("\(path): GGUF version \(version) (expected 2 or 3) at byte 4")
        }
        let tensors = try r.u64("the tensor count")
        let kvCount = try r.u64("the metadata count")
        // A key/value pair takes at least 8 + 4 + 1 bytes: a count beyond what the rest of the file can hold is
        // refused before anything is allocated for it.
        guard kvCount <= UInt64((bytes.count - r.offset) / 13) else {
            throw FormatError("\(path): truncated GGUF at byte \(r.offset) (expected \(kvCount) metadata pairs of at "
                + "least 13 bytes each; \(bytes.count - r.offset) bytes are left)")
        }
        tensorCount = tensors
        var values = [String: GGUFValue](minimumCapacity: Int(kvCount))
        var keys = [String]()
        keys.reserveCapacity(Int(kvCount))
        for _ in 0..<kvCount {
            let at = r.offset
            let key = try r.string("a metadata key")
            guard values[key] == nil else { throw FormatError("\(path): duplicate metadata key '\(key)' at byte \(at)") }
            let typeAt = r.offset
            let type = try r.u32("the value type of '\(key)'")
            values[key] = try r.value(typeID: type, at: typeAt, what: "'\(key)'", depth: 0)
            keys.append(key)
        }
        self.values = values
        self.keys = keys
        endOffset = r.offset
    }

    /// Maps `path` and parses its metadata only.
    public init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(bytes: file.bytes, path: path)
    }
}

/// A bounds-checked little-endian reader over a GGUF file's bytes; every failure names the path and byte offset.
struct GGUFCursor {
    static let magic: UInt32 = 0x4655_4747  // "GGUF" read as a little-endian u32
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    func truncated(_ what: String) -> FormatError {
        FormatError("\(path): truncated GGUF at byte \(offset) (expected \(what))")
    }

    func need(_ n: Int, _ what: String) throws {
        if n < 0 || bytes.count - offset < n { throw truncated(what) }
    }

    mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try need(MemoryLayout<T>.size, what)
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
    mutating func u32(_ what: String) throws -> UInt32 { try load(UInt32.self, what) }
    mutating func u64(_ what: String) throws -> UInt64 { try load(UInt64.self, what) }

    mutating func string(_ what: String) throws -> String {
        let n = try u64("the length of \(what)")
        guard n <= UInt64(bytes.count - offset) else { offset -= 8; throw truncated("\(what) of \(n) bytes") }
        defer { offset += Int(n) }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(n))]), as: UTF8.self)
    }

    /// `count` fixed-size elements copied out in one go (GGUF arrays are packed, with no alignment).
    mutating func elements<T>(_ count: Int, of: T.Type, _ what: String) throws -> [T] {
        let size = MemoryLayout<T>.size
        guard count <= (bytes.count - offset) / size else { throw truncated("\(count) elements of \(what)") }
        let out = [T](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 {
                UnsafeMutableRawBufferPointer(buf).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count * size)]))
            }
            n = count
        }
        offset += count * size
        return out
    }

    mutating func value(typeID: UInt32, at: Int, what: String, depth: Int) throws -> GGUFValue {
        guard let type = GGUFValueType(rawValue: typeID) else {
            throw FormatError("\(path): unknown GGUF value type \(typeID) at byte \(at) (expected 0...12) in \(what)")
        }
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, "the value of \(what)"))
        case .int8: return .int8(try load(Int8.self, "the value of \(what)"))
        case .uint16: return .uint16(try load(UInt16.self, "the value of \(what)"))
        case .int16: return .int16(try load(Int16.self, "the value of \(what)"))
        case .uint32: return .uint32(try load(UInt32.self, "the value of \(what)"))
        case .int32: return .int32(try load(Int32.self, "the value of \(what)"))
        case .uint64: return .uint64(try load(UInt64.self, "the value of \(what)"))
        case .int64: return .int64(try load(Int64.self, "the value of \(what)"))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, "the value of \(what)")))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, "the value of \(what)")))
        case .bool: return .bool(try load(UInt8.self, "the value of \(what)") != 0)
        case .string: return .string(try string("the value of \(what)"))
        case .array: return .array(try array(at: at, what: what, depth: depth))
        }
    }

    mutating func array(at: Int, what: String, depth: Int) throws -> GGUFArray {
        guard depth < 8 else { throw FormatError("\(path): arrays nested deeper than 8 at byte \(at) in \(what)") }
        let typeAt = offset
        let typeID = try u32("the element type of \(what)")
        let count64 = try u64("the length of \(what)")
        // Every element takes at least one byte, so a count beyond the file is truncation, not a huge allocation.
        guard count64 <= UInt64(bytes.count - offset) else { throw truncated("\(count64) elements of \(what)") }
        let n = Int(count64)
        guard let type = GGUFValueType(rawValue: typeID) else {
            throw FormatError("\(path): unknown GGUF array element type \(typeID) at byte \(typeAt) (expected 0...12) in \(what)")
        }
        switch type {
        case .uint8: return .uint8(try elements(n, of: UInt8.self, what))
        case .int8: return .int8(try elements(n, of: Int8.self, what))
        case .uint16: return .uint16(try elements(n, of: UInt16.self, what))
        case .int16: return .int16(try elements(n, of: Int16.self, what))
        case .uint32: return .uint32(try elements(n, of: UInt32.self, what))
        case .int32: return .int32(try elements(n, of: Int32.self, what))
        case .uint64: return .uint64(try elements(n, of: UInt64.self, what))
        case .int64: return .int64(try elements(n, of: Int64.self, what))
        case .float32: return .float32(try elements(n, of: Float.self, what))
        case .float64: return .float64(try elements(n, of: Double.self, what))
        case .bool: return .bool(try elements(n, of: UInt8.self, what).map { $0 != 0 })
        case .string:
            var out = [String]()
            out.reserveCapacity(n)
            for k in 0..<n { out.append(try string("element \(k) of \(what)")) }
            return .string(out)
        case .array:
            var out = [GGUFArray]()
            for k in 0..<n {
                let elementAt = offset
                out.append(try array(at: elementAt, what: "element \(k) of \(what)", depth: depth + 1))
            }
            return .array(out)
        }
    }
}
