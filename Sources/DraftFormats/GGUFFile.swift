/// One tensor of a GGUF file as its tensor info describes it.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// The dimensions exactly as stored: `ne0` (the fastest-varying, column dimension) first.
    public let dimensions: [Int]
    public let type: GGMLType
    /// The byte offset of the data, relative to the file's data section (`GGUFFile.dataOffset`).
    public let offset: Int
    public let byteCount: Int
    public let elementCount: Int

    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int, byteCount: Int, elementCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
        self.elementCount = elementCount
    }

    /// The shape in row-major order (dimensions reversed): `[rows, columns]` for a matrix.
    public var rowMajorShape: [Int] { dimensions.reversed() }
    /// Elements of one row (`ne0`); 1 for a scalar.
    public var columns: Int { dimensions.first ?? 1 }
    /// Rows: every dimension but `ne0`, multiplied.
    public var rows: Int { dimensions.count <= 1 ? 1 : dimensions.dropFirst().reduce(1, *) }
    /// Bytes of one row.
    public var rowBytes: Int { columns / type.blockElements * type.blockBytes }
}

/// A GGUF file (versions 2 and 3), memory-mapped read-only: header, metadata, tensor infos, then the tensor data
/// section at `dataOffset`, each tensor at an offset aligned to `alignment`. Layout: GGUF's `docs/gguf.md`.
///
/// Opening validates the structure (every count, type, dimension and extent) without reading tensor data, so a
/// multi-GB model opens in the time it takes to parse its header. Tensor data are views into the mapping.
public final class GGUFFile: @unchecked Sendable {
    /// The largest number of dimensions ggml has (`GGML_MAX_DIMS`).
    public static let maxDimensions = 4

    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// `general.alignment`, 32 when absent.
    public let alignment: Int
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// The byte offset of the data section: just past the tensor infos, rounded up to `alignment`.
    public let dataOffset: Int
    /// The whole file's bytes (the mapping).
    public var bytes: UnsafeRawBufferPointer { file.bytes }

    private let file: MappedFile
    private let index: [String: Int]

    /// Maps `path` and validates it; any defect is a `FormatError` naming the file and the byte offset or tensor.
    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        let b = file.bytes
        let meta = try GGUFMetadata(bytes: b, path: path)
        version = meta.version
        metadata = meta.values
        metadataKeys = meta.keys

        if let a = meta.values["general.alignment"] {
            guard case .uint32(let v) = a, v > 0, v & (v - 1) == 0 else {
                throw FormatError("\(path): general.alignment is \(a) (expected a uint32 power of two)")
            }
            alignment = Int(v)
        } else {
            alignment = 32
        }

        var r = GGUFCursor(bytes: b, path: path)
        r.offset = meta.endOffset
        // A tensor info takes at least 8 (name length) + 4 (dimension count) + 4 (type) + 8 (offset) bytes.
        guard meta.tensorCount <= UInt64((b.count - r.offset) / 24) else {
            throw FormatError("\(path): truncated GGUF at byte \(r.offset) (expected \(meta.tensorCount) tensor infos "
                + "of at least 24 bytes each; \(b.count - r.offset) bytes are left)")
        }
        let count = Int(meta.tensorCount)
        var infos = [GGUFTensorInfo]()
        infos.reserveCapacity(count)
        var index = [String: Int](minimumCapacity: count)
        for t in 0..<count {
            let at = r.offset
            let name = try r.string("the name of tensor \(t)")
            guard index[name] == nil else { throw FormatError("\(path): duplicate tensor name '\(name)' at byte \(at)") }
            let nDims = try r.u32("the dimension count of tensor '\(name)'")
            guard nDims <= UInt32(Self.maxDimensions) else {
                throw FormatError("\(path): tensor '\(name)' at byte \(at) has \(nDims) dimensions (expected at most \(Self.maxDimensions))")
            }
            var dims = [Int]()
            var elements = 1
            for d in 0..<Int(nDims) {
                let v = try r.u64("dimension \(d) of tensor '\(name)'")
                // No type packs more than 2 elements a byte: a dimension or product beyond 8 per byte of the file
                // cannot be real, and refusing it early keeps the arithmetic below from overflowing.
                let limit = UInt64(b.count) * 8
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(min(v, limit)))
                guard v <= limit, !overflow, product <= b.count * 8 else {
                    throw FormatError("\(path): tensor '\(name)' at byte \(at) has implausible dimensions (dimension \(d) is \(v))")
                }
                dims.append(Int(v))
                elements = product
            }
            let typeID = try r.u32("the type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: typeID) else {
                let known = GGMLType.allCases.map { "\($0.name) (\($0.rawValue))" }.joined(separator: ", ")
                throw FormatError("\(path): tensor '\(name)' has unknown or unsupported ggml type id \(typeID) at byte "
                    + "\(r.offset - 4) (supported: \(known))")
            }
            let offset = try r.u64("the data offset of tensor '\(name)'")
            let columns = dims.first ?? 1
            guard columns % type.blockElements == 0, let bytes = type.byteCount(elements: elements) else {
                throw FormatError("\(path): tensor '\(name)' has rows of \(columns) elements, not a whole number of "
                    + "\(type.name) blocks of \(type.blockElements)")
            }
            guard offset % UInt64(alignment) == 0 else {
                throw FormatError("\(path): tensor '\(name)' data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            guard offset <= UInt64(b.count) else {
                throw FormatError("\(path): tensor '\(name)' data offset \(offset) lies beyond the end of the file (\(b.count) bytes)")
            }
            index[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: Int(offset),
                                        byteCount: bytes, elementCount: elements))
        }
        let (padded, _) = Self.align(r.offset, to: alignment)
        dataOffset = padded
        // Every tensor's bytes must lie inside the file and must not overlap another's.
        var end = 0
        var previous: String?
        for info in infos.sorted(by: { $0.offset < $1.offset }) {
            guard info.byteCount <= b.count, dataOffset + info.offset <= b.count - info.byteCount else {
                throw FormatError("\(path): truncated GGUF: tensor '\(info.name)' needs bytes \(dataOffset + info.offset)"
                    + "..<\(dataOffset + info.offset + info.byteCount) (expected within the file's \(b.count) bytes)")
            }
            if let previous, info.offset < end {
                throw FormatError("\(path): tensor '\(info.name)' at data offset \(info.offset) overlaps tensor '\(previous)'")
            }
            if info.byteCount > 0 {
                end = info.offset + info.byteCount
                previous = info.name
            }
        }
        tensors = infos
        self.index = index
    }

    /// The tensor named `name`, if any.
    public func tensor(named name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The tensor's bytes: a view into the mapping, valid while this object lives.
    public func data(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[(dataOffset + info.offset)..<(dataOffset + info.offset + info.byteCount)])
    }

    /// `offset` rounded up to a multiple of `alignment` (a power of two), and the padding that takes.
    static func align(_ offset: Int, to alignment: Int) -> (Int, Int) {
        let padded = (offset + alignment - 1) / alignment * alignment
        return (padded, padded - offset)
    }
}
