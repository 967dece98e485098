// Reading a checkpoint: metadata is loaded on open; tensor data is read on demand straight into the caller's
// buffer and checked against the stored checksum.
import CHDF5
import Foundation

/// Owns an open HDF5 file identifier; closes it when the last reader copy goes away.
private final class OpenFile {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { withHDF5 { _ = H5Fclose(id) } }
}

/// An open checkpoint file. Opening checks that it is an HDF5 file with `format = "swiftdraft-checkpoint"` and the
/// four groups, and loads all attributes and the dataset list; `read` and `verify` check data against checksums.
public struct CheckpointReader {
    /// The file.
    public let url: URL
    /// Root attributes (`format`, `format_version`, `step`, `tokens_seen`, ... as the writer's caller set them).
    public let attributes: [String: CheckpointAttribute]
    /// Root attribute names in the order they were written.
    public let attributeNames: [String]
    /// Attributes of each group (e.g. the optimizer step on `/optimizer`).
    public let groupAttributes: [CheckpointGroup: [String: CheckpointAttribute]]
    /// The root attribute `format_version`: between `CheckpointFormat.oldestReadableVersion` and
    /// `CheckpointFormat.version` (any other file is refused on open).
    public let formatVersion: Int64
    /// Every dataset, group by group (`/model`, `/optimizer`, `/data`, `/rng`), each in the order written.
    public let datasets: [CheckpointTensorInfo]

    private let file: OpenFile
    private var ctx: HDF5Context { HDF5Context(path: url.path) }

    /// Opens `url`; a missing, truncated or foreign file is a `CheckpointError` naming it.
    public static func open(_ url: URL) throws -> CheckpointReader { try CheckpointReader(url: url) }

    /// Opens `url`; a missing, truncated or foreign file is a `CheckpointError` naming it.
    public init(url: URL) throws {
        let ctx = HDF5Context(path: url.path)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError(path: url.path, reason: "expected a checkpoint file, found nothing")
        }
        let loaded: (OpenFile, [String: CheckpointAttribute], [String], Int64,
                     [CheckpointGroup: [String: CheckpointAttribute]], [CheckpointTensorInfo]) = try withHDF5 {
            guard H5Fis_hdf5(url.path) > 0 else {
                _ = H5Eclear2(swd_h5e_default())
                throw CheckpointError(path: url.path, reason: "expected an HDF5 file (signature \\x89HDF), found other data")
            }
            let fapl = try makeFileAccess(ctx)
            defer { H5ID.close(plist: fapl) }
            let file = OpenFile(try ctx.id(H5Fopen(url.path, swd_h5f_acc_rdonly(), fapl),
                                           "expected a complete HDF5 file (truncated or damaged?)"))
            let names = try listAttributeNames(of: file.id, where: "/", ctx)
            var attributes: [String: CheckpointAttribute] = [:]
            for name in names { attributes[name] = try readAttribute(name, of: file.id, where: "/", ctx) }
            guard attributes["format"] == .string(CheckpointFormat.name) else {
                throw CheckpointError(path: url.path,
                                      reason: "expected root attribute format = \"\(CheckpointFormat.name)\"")
            }
            let version = try Self.checkVersion(attributes["format_version"], path: url.path)
            var groupAttributes: [CheckpointGroup: [String: CheckpointAttribute]] = [:]
            var datasets: [CheckpointTensorInfo] = []
            for group in CheckpointGroup.allCases {
                guard H5Lexists(file.id, group.path, swd_h5p_default()) > 0 else {
                    _ = H5Eclear2(swd_h5e_default())
                    throw CheckpointError(path: url.path, reason: "expected group \(group.path)")
                }
                let id = try ctx.id(H5Oopen(file.id, group.path, swd_h5p_default()), "expected to open \(group.path)")
                defer { H5ID.close(object: id) }
                var values: [String: CheckpointAttribute] = [:]
                for name in try listAttributeNames(of: id, where: group.path, ctx) {
                    values[name] = try readAttribute(name, of: id, where: group.path, ctx)
                }
                groupAttributes[group] = values
                for name in try listLinkNames(in: id, where: group.path, ctx) {
                    datasets.append(try Self.describe(file: file.id, group: group, name: name, ctx))
                }
            }
            return (file, attributes, names, version, groupAttributes, datasets)
        }
        self.url = url
        (file, attributes, attributeNames, formatVersion, groupAttributes, datasets) = loaded
    }

    /// The file's version when this build can read it; a newer one is refused naming both versions, since what a
    /// later layout means (renamed tensors, new groups) cannot be guessed.
    static func checkVersion(_ value: CheckpointAttribute?, path: String) throws -> Int64 {
        guard case .int(let version)? = value else {
            throw CheckpointError(path: path, reason: "expected an integer root attribute format_version")
        }
        if version > CheckpointFormat.version {
            throw CheckpointError(path: path, reason: "written by format_version \(version), this build reads up to "
                                  + "\(CheckpointFormat.version) (use a newer swiftdraft)")
        }
        guard version >= CheckpointFormat.oldestReadableVersion else {
            throw CheckpointError(path: path, reason: "expected format_version \(CheckpointFormat.oldestReadableVersion)"
                                  + "...\(CheckpointFormat.version), got \(version)")
        }
        return version
    }

    private static func describe(file: hid_t, group: CheckpointGroup, name: String,
                                 _ ctx: HDF5Context) throws -> CheckpointTensorInfo {
        let path = group.path + "/" + name
        let dataset = try ctx.id(H5Dopen2(file, path, swd_h5p_default()), "expected \(path) to be a dataset")
        defer { H5ID.close(dataset: dataset) }
        let type = try ctx.id(H5Dget_type(dataset), "expected to read the datatype of \(path)")
        defer { H5ID.close(datatype: type) }
        let elementType: CheckpointElementType
        switch (H5Tget_class(type), H5Tget_size(type)) {
        case (H5T_FLOAT, 4): elementType = .float32
        case (H5T_INTEGER, 8) where H5Tget_sign(type) == H5T_SGN_2: elementType = .int64
        default: throw CheckpointError(path: ctx.path, reason: "expected \(path) to hold float32 or int64 values")
        }
        let space = try ctx.id(H5Dget_space(dataset), "expected to read the dataspace of \(path)")
        defer { H5ID.close(dataspace: space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 else { throw ctx.failure("expected to read the shape of \(path)") }
        var dims = [hsize_t](repeating: 0, count: rank)
        if rank > 0 { _ = H5Sget_simple_extent_dims(space, &dims, nil) }
        let checksum = try readChecksum(of: dataset, where: path, ctx)
        return CheckpointTensorInfo(group: group, name: name, shape: dims.map { Int($0) }, elementType: elementType,
                                    checksum: checksum)
    }

    /// Float32 tensors (`/model`, `/optimizer`, or wherever the writer put them), in file order.
    public var tensors: [CheckpointTensorInfo] { datasets.filter { $0.elementType == .float32 } }

    /// Int64 arrays, in file order.
    public var int64Arrays: [CheckpointTensorInfo] { datasets.filter { $0.elementType == .int64 } }

    /// The dataset `name` in `group`, or nil.
    public func dataset(_ name: String, in group: CheckpointGroup) -> CheckpointTensorInfo? {
        datasets.first { $0.group == group && $0.name == name }
    }

    /// A root attribute that must be present (the error names it).
    public func attribute(_ name: String, in group: CheckpointGroup? = nil) throws -> CheckpointAttribute {
        let values = group.map { groupAttributes[$0] ?? [:] } ?? attributes
        guard let value = values[name] else {
            throw CheckpointError(path: url.path, reason: "expected attribute \(name) on \(group?.path ?? "/")")
        }
        return value
    }

    /// An integer attribute that must be present.
    public func int(_ name: String, in group: CheckpointGroup? = nil) throws -> Int64 {
        guard case .int(let value) = try attribute(name, in: group) else {
            throw CheckpointError(path: url.path, reason: "expected attribute \(name) on \(group?.path ?? "/") to be an integer")
        }
        return value
    }

    /// A string attribute that must be present.
    public func string(_ name: String, in group: CheckpointGroup? = nil) throws -> String {
        guard case .string(let value) = try attribute(name, in: group) else {
            throw CheckpointError(path: url.path, reason: "expected attribute \(name) on \(group?.path ?? "/") to be a string")
        }
        return value
    }

    /// Reads tensor `name` of `group` into `buffer` (exactly its element count) and verifies its checksum.
    public func read(_ name: String, in group: CheckpointGroup, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let info = dataset(name, in: group) else {
            throw CheckpointError(path: url.path, reason: "expected a tensor \(group.path)/\(name)")
        }
        try read(info, into: buffer)
    }

    /// Reads a tensor into `buffer` (exactly its element count) with one `H5Dread` and verifies its checksum;
    /// on a mismatch the buffer holds the damaged data and the error names the tensor.
    public func read(_ info: CheckpointTensorInfo, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard info.elementType == .float32 else {
            throw CheckpointError(path: url.path, reason: "expected \(info.path) to be float32, it is \(info.elementType)")
        }
        guard buffer.count == info.count else {
            throw CheckpointError(path: url.path, reason: "expected a buffer of \(info.count) floats for \(info.path) "
                                  + "(shape \(info.shape)), got \(buffer.count)")
        }
        try readData(info, into: UnsafeMutableRawBufferPointer(buffer), memoryType: swd_h5t_native_float())
    }

    /// Reads the int64 array `name` of `group` and verifies its checksum.
    public func readInt64s(_ name: String, in group: CheckpointGroup) throws -> [Int64] {
        guard let info = dataset(name, in: group), info.elementType == .int64 else {
            throw CheckpointError(path: url.path, reason: "expected an int64 array \(group.path)/\(name)")
        }
        var values = [Int64](repeating: 0, count: info.count)
        try values.withUnsafeMutableBytes { try readData(info, into: $0, memoryType: swd_h5t_native_int64()) }
        return values
    }

    private func readData(_ info: CheckpointTensorInfo, into bytes: UnsafeMutableRawBufferPointer,
                          memoryType: hid_t) throws {
        let ctx = self.ctx
        try withHDF5 {
            let dataset = try ctx.id(H5Dopen2(file.id, info.path, swd_h5p_default()), "expected dataset \(info.path)")
            defer { H5ID.close(dataset: dataset) }
            if let base = bytes.baseAddress, bytes.count > 0 {
                try ctx.ok(H5Dread(dataset, memoryType, swd_h5s_all(), swd_h5s_all(), swd_h5p_default(), base),
                           "expected to read \(info.byteCount) bytes of \(info.path) (truncated file?)")
            }
        }
        guard let stored = info.checksum else {
            throw CheckpointError(path: url.path, reason: "expected attribute \(CheckpointFormat.checksumAttribute) "
                                  + "on \(info.path)")
        }
        let actual = CheckpointChecksum.xxh64(UnsafeRawBufferPointer(bytes))
        guard actual == stored else {
            throw CheckpointError(path: url.path, reason: "expected \(info.path) to match its checksum "
                                  + "\(hex(stored)), its data hashes to \(hex(actual)) (corrupt data)")
        }
    }

    /// Reads every dataset and checks its checksum; the result lists each failure (empty: the file is sound).
    /// Uses one scratch buffer the size of the largest dataset.
    public func verifyAll() -> [(dataset: CheckpointTensorInfo, error: CheckpointError)] {
        let largest = datasets.map(\.byteCount).max() ?? 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 8), alignment: 64)
        defer { scratch.deallocate() }
        var failures: [(dataset: CheckpointTensorInfo, error: CheckpointError)] = []
        for info in datasets {
            let memoryType = info.elementType == .float32 ? swd_h5t_native_float() : swd_h5t_native_int64()
            do {
                try readData(info, into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<info.byteCount]),
                             memoryType: memoryType)
            } catch let error as CheckpointError {
                failures.append((info, error))
            } catch {
                failures.append((info, CheckpointError(path: url.path, reason: "\(error)")))
            }
        }
        return failures
    }

    /// Throws the first failure of `verifyAll()`.
    public func verify() throws {
        if let first = verifyAll().first { throw first.error }
    }
}

func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
}
