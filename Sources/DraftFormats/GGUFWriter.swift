import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a GGUF v3 file (GGUF's `docs/gguf.md`): metadata in the order added, tensor infos, then each tensor's data
/// at an offset aligned to `alignment`, padded after each tensor as llama.cpp's writer does. `write(to:)` is atomic.
///
/// Tensors are kept in memory until written: this is the export path for drafts (tens of millions of weights), not
/// a converter for multi-GB models.
public struct GGUFWriter {
    public private(set) var metadataKeys: [String] = []
    public private(set) var metadata: [String: GGUFValue] = [:]
    public private(set) var tensors: [GGUFTensorInfo] = []
    /// `general.alignment` when added, else 32.
    public private(set) var alignment = 32
    private var tensorBytes: [[UInt8]] = []
    private var nextOffset = 0

    public init() {}

    /// Adds a metadata pair; a repeated key, or a `general.alignment` that is not a uint32 power of two, is an error.
    public mutating func add(_ key: String, _ value: GGUFValue) throws {
        guard metadata[key] == nil else { throw FormatError("GGUF writer: metadata key '\(key)' added twice") }
        if key == "general.alignment" {
            guard case .uint32(let a) = value, a > 0, a & (a - 1) == 0 else {
                throw FormatError("GGUF writer: general.alignment must be a uint32 power of two, not \(value)")
            }
            guard tensors.isEmpty else { throw FormatError("GGUF writer: set general.alignment before adding tensors") }
            alignment = Int(a)
        }
        metadataKeys.append(key)
        metadata[key] = value
    }

    /// Adds a tensor from its encoded bytes (any `GGMLType`), with dimensions in ggml order (`ne0`, the row length,
    /// first).
    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, bytes: [UInt8]) throws {
        guard !tensors.contains(where: { $0.name == name }) else {
            throw FormatError("GGUF writer: tensor '\(name)' added twice")
        }
        guard dimensions.count <= GGUFFile.maxDimensions, dimensions.allSatisfy({ $0 >= 0 }) else {
            throw FormatError("GGUF writer: tensor '\(name)' has dimensions \(dimensions) (expected at most 4, none negative)")
        }
        let elements = dimensions.reduce(1, *)
        guard (dimensions.first ?? 1) % type.blockElements == 0, let expected = type.byteCount(elements: elements) else {
            throw FormatError("GGUF writer: tensor '\(name)' rows of \(dimensions.first ?? 1) are not whole \(type.name) blocks of \(type.blockElements)")
        }
        guard bytes.count == expected else {
            throw FormatError("GGUF writer: tensor '\(name)' has \(bytes.count) bytes (expected \(expected) for \(type.name) \(dimensions))")
        }
        tensors.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: nextOffset,
                                      byteCount: expected, elementCount: elements))
        tensorBytes.append(bytes)
        nextOffset = GGUFFile.align(nextOffset + expected, to: alignment).0
    }

    /// Adds a tensor from floats in row-major `shape` (`[rows, columns]` for a matrix), quantized to `type`
    /// (F32, F16, BF16 or Q8_0).
    public mutating func addTensor(name: String, shape: [Int], values: [Float], type: GGMLType) throws {
        guard shape.reduce(1, *) == values.count else {
            throw FormatError("GGUF writer: tensor '\(name)' has \(values.count) values for shape \(shape)")
        }
        let dims = Array(shape.reversed())
        guard (dims.first ?? 1) % type.blockElements == 0 else {
            throw FormatError("GGUF writer: tensor '\(name)' rows of \(dims.first ?? 1) are not whole \(type.name) blocks of \(type.blockElements)")
        }
        let bytes: [UInt8]
        do { bytes = try Quantizer.quantize(type, values) } catch let e as FormatError {
            throw FormatError("GGUF writer: tensor '\(name)': \(e.message)")
        }
        try addTensor(name: name, dimensions: dims, type: type, bytes: bytes)
    }

    /// The whole file.
    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(4096 + nextOffset)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadataKeys.count))
        for key in metadataKeys {
            guard let value = metadata[key] else { continue }
            string(key)
            u32(value.type.rawValue)
            Self.encode(value, into: &out)
        }
        for t in tensors {
            string(t.name)
            u32(UInt32(t.dimensions.count))
            for d in t.dimensions { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(t.offset))
        }
        out.append(contentsOf: repeatElement(0, count: GGUFFile.align(out.count, to: alignment).1))
        for bytes in tensorBytes {
            out.append(contentsOf: bytes)
            out.append(contentsOf: repeatElement(0, count: GGUFFile.align(bytes.count, to: alignment).1))
        }
        return out
    }

    /// Writes the file atomically: a temporary file in the same directory, fsynced, renamed over `url`, and the
    /// directory fsynced, so a crash leaves either the old file or the whole new one.
    public func write(to url: URL) throws {
        let bytes = serialized()
        let directory = url.deletingLastPathComponent().path
        let temporary = "\(directory)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func failure(_ what: String) -> FormatError {
            FormatError("\(url.path): cannot write (\(what): \(String(cString: strerror(errno))))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("create \(temporary)") }
        var ok = false
        defer { if !ok { unlink(temporary) } }
        let written = bytes.withUnsafeBytes { raw -> Bool in
            var at = 0
            while at < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + at, raw.count - at)
                if n < 0 { if errno == EINTR { continue }; return false }
                at += n
            }
            return true
        }
        guard written, fsync(fd) == 0 else { let e = failure("write"); close(fd); throw e }
        guard close(fd) == 0 else { throw failure("close") }
        guard rename(temporary, url.path) == 0 else { throw failure("rename") }
        ok = true
        let dfd = open(directory, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    private static func encode(_ value: GGUFValue, into out: inout [UInt8]) {
        func raw<T>(_ v: T) { withUnsafeBytes(of: v) { out.append(contentsOf: $0) } }
        switch value {
        case .uint8(let v): out.append(v)
        case .int8(let v): raw(v)
        case .uint16(let v): raw(v.littleEndian)
        case .int16(let v): raw(v.littleEndian)
        case .uint32(let v): raw(v.littleEndian)
        case .int32(let v): raw(v.littleEndian)
        case .uint64(let v): raw(v.littleEndian)
        case .int64(let v): raw(v.littleEndian)
        case .float32(let v): raw(v.bitPattern.littleEndian)
        case .float64(let v): raw(v.bitPattern.littleEndian)
        case .bool(let v): out.append(v ? 1 : 0)
        case .string(let s): raw(UInt64(s.utf8.count).littleEndian); out.append(contentsOf: s.utf8)
        case .array(let a): encode(a, into: &out)
        }
    }

    private static func encode(_ array: GGUFArray, into out: inout [UInt8]) {
        withUnsafeBytes(of: array.elementType.rawValue.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(array.count).littleEndian) { out.append(contentsOf: $0) }
        // Numeric arrays are packed little-endian, which is this host's order: their storage is the encoding.
        func packed<T>(_ a: [T]) { a.withUnsafeBytes { out.append(contentsOf: $0) } }
        switch array {
        case .uint8(let a): packed(a)
        case .int8(let a): packed(a)
        case .uint16(let a): packed(a)
        case .int16(let a): packed(a)
        case .uint32(let a): packed(a)
        case .int32(let a): packed(a)
        case .uint64(let a): packed(a)
        case .int64(let a): packed(a)
        case .float32(let a): packed(a)
        case .float64(let a): packed(a)
        case .bool(let a): out.append(contentsOf: a.map { $0 ? 1 : 0 })
        case .string(let a):
            for s in a {
                withUnsafeBytes(of: UInt64(s.utf8.count).littleEndian) { out.append(contentsOf: $0) }
                out.append(contentsOf: s.utf8)
            }
        case .array(let a): for inner in a { encode(inner, into: &out) }
        }
    }
}
