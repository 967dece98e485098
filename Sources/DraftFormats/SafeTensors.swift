import Foundation

/// The element types of safetensors that SwiftDraft reads and writes (the file may hold others; they are listed in
/// `entries` but have no float view).
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", i64 = "I64"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i64: return 8
        }
    }
}

/// A Hugging Face safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range (relative to the data section), then the raw little-endian data.
/// Spec: huggingface/safetensors' README. Used for Hugging Face models, the PyTorch parity fixtures and `export`.
public struct SafeTensorsFile: Sendable {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        /// Byte range relative to the data section.
        public let range: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// The dtype names of the format with their element sizes, for validating extents of tensors we do not convert.
    static let elementSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2,
        "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    ]

    public let path: String
    public let entries: [String: Entry]
    /// Tensor names in data order.
    public let names: [String]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    /// Maps and validates the file: a header that is not the format's, an unknown dtype, or a tensor whose byte range
    /// does not match its shape or leaves the file is a `FormatError` naming the file (and tensor).
    public init(contentsOf url: URL) throws {
        let path = url.path
        file = try MappedFile(path: path)
        self.path = path
        let bytes = file.bytes
        func fail(_ what: String) -> FormatError { FormatError("\(path): \(what)") }
        guard bytes.count >= 8 else {
            throw fail("truncated safetensors file of \(bytes.count) bytes (expected an 8-byte header length)")
        }
        let declared = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard declared >= 2, declared <= UInt64(bytes.count - 8) else {
            throw fail("safetensors header length \(declared) at byte 0 (expected 2...\(bytes.count - 8) for this file)")
        }
        let headerLength = Int(declared)
        let headerBytes = Data(UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)]))
        guard let header = (try? JSONSerialization.jsonObject(with: headerBytes)) as? [String: Any] else {
            throw fail("malformed safetensors header (expected a JSON object in bytes 8..<\(8 + headerLength))")
        }
        let dataLength = bytes.count - 8 - headerLength
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not a JSON object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__ key '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shapeValues = info["shape"] as? [NSNumber], let offsets = info["data_offsets"] as? [NSNumber],
                  offsets.count == 2
            else { throw fail("tensor '\(name)' has a malformed entry (expected dtype, shape and two data_offsets)") }
            guard let size = Self.elementSizes[dtype] else {
                throw fail("tensor '\(name)' has unknown dtype '\(dtype)' (expected one of \(Self.elementSizes.keys.sorted().joined(separator: ", ")))")
            }
            let shape = shapeValues.map(\.intValue)
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow else { throw fail("tensor '\(name)' has an implausible shape \(shape)") }
                elements = p
            }
            let begin = offsets[0].intValue, end = offsets[1].intValue
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] leave the data section of \(dataLength) bytes")
            }
            let (needed, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow, needed == end - begin else {
                throw fail("tensor '\(name)' of shape \(shape) and dtype \(dtype) needs \(elements) x \(size) bytes, "
                    + "but data_offsets give \(end - begin)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        let ordered = entries.sorted { ($0.value.range.lowerBound, $0.key) < ($1.value.range.lowerBound, $1.key) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where !a.value.range.isEmpty && a.value.range.upperBound > b.value.range.lowerBound {
            throw fail("tensors '\(a.key)' and '\(b.key)' overlap in the data section")
        }
        self.entries = entries
        self.names = ordered.map(\.key)
        self.metadata = metadata
        self.dataStart = 8 + headerLength
    }

    /// The raw bytes of a tensor: a view into the mapping, valid while this value (or a copy) lives.
    public func bytes(_ name: String) -> UnsafeRawBufferPointer? {
        guard let e = entries[name] else { return nil }
        return UnsafeRawBufferPointer(rebasing: file.bytes[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)])
    }

    /// A floating-point tensor (F32, F16 or BF16) as Float; nil when absent or of another dtype.
    public func floats(_ name: String) -> [Float]? {
        guard let e = entries[name], let raw = bytes(name) else { return nil }
        let n = e.range.count
        switch e.dtype {
        case "F32": return dequantize(.f32, raw, count: n / 4)
        case "F16": return dequantize(.f16, raw, count: n / 2)
        case "BF16": return dequantize(.bf16, raw, count: n / 2)
        default: return nil
        }
    }

    /// A floating-point tensor as Float, or a `FormatError` naming the file and tensor.
    public func tensor(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw FormatError("\(path): no tensor '\(name)'") }
        guard let v = floats(name) else {
            throw FormatError("\(path): tensor '\(name)' has dtype \(e.dtype) (expected F32, F16 or BF16)")
        }
        return v
    }

    public func int32s(_ name: String) -> [Int32]? {
        guard let e = entries[name], e.dtype == "I32", let raw = bytes(name) else { return nil }
        return (0..<(e.range.count / 4)).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
    }

    /// Writes float tensors (in the given order, converted to `dtype`: F32, F16 or BF16) and string metadata as a
    /// safetensors file, atomically.
    public static func write(_ tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                             metadata: [String: String], dtype: SafeTensorsDType = .f32, to url: URL) throws {
        let type: GGMLType
        switch dtype {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        case .i32, .i64: throw FormatError("\(url.path): cannot write float tensors as \(dtype.rawValue) (expected F32, F16 or BF16)")
        }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            guard t.shape.reduce(1, *) == t.values.count else {
                throw FormatError("\(url.path): tensor '\(t.name)' has \(t.values.count) values for shape \(t.shape)")
            }
            let bytes = t.values.count * dtype.byteSize
            header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(count: 8 + json.count + offset)
        try out.withUnsafeMutableBytes { o in
            o.storeBytes(of: UInt64(json.count).littleEndian, as: UInt64.self)
            json.copyBytes(to: o.baseAddress!.assumingMemoryBound(to: UInt8.self) + 8, count: json.count)
            var at = 8 + json.count
            for t in tensors {
                if let src = t.values.baseAddress { try quantize(type, src, into: o.baseAddress! + at, count: t.values.count) }
                at += t.values.count * dtype.byteSize
            }
        }
        try out.write(to: url, options: .atomic)
    }
}
