import DraftErrors
import Foundation

/// Which tokens of one `TokenShard` are trained targets, memory-mapped from the shard's `.mask` sidecar.
///
/// Knowledge-distillation shards hold prompt + response documents: the prompt is context the draft reads but is not
/// asked to predict, so its positions carry mask 0; response tokens (and the stop token that ended a response) carry 1.
/// Raw-text shards have no sidecar: every token is a target.
///
///     offset  size  field
///          0     8  magic "SWDLMASK"
///          8     4  format version (1)
///         12     4  zero
///         16     8  token count (equal to the shard's)
///         24     8  zero
///         32     n  one byte per token: 1 = trained target, 0 = context only
public final class LossMaskShard {
    public static let magic = Array("SWDLMASK".utf8)
    public static let version: UInt32 = 1
    public static let headerBytes = 32
    public static let fileExtension = "mask"

    public let url: URL
    public let tokenCount: Int
    private let file: MappedSidecar

    public init(url: URL) throws {
        self.url = url
        file = try MappedSidecar(url: url)
        let raw = file.base
        guard file.size >= Self.headerBytes, Array(UnsafeRawBufferPointer(start: raw, count: 8)) == Self.magic else {
            throw DataError("\(url.path): not a loss mask (expected magic 'SWDLMASK' and a \(Self.headerBytes)-byte header)")
        }
        let version = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard version == Self.version else {
            throw DataError("\(url.path): loss mask format version \(version), expected \(Self.version)")
        }
        let count = raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        guard count == UInt64(file.size - Self.headerBytes) else {
            throw DataError("\(url.path): truncated loss mask: \(file.size) bytes, header promises \(count) tokens at offset 16")
        }
        tokenCount = Int(count)
    }

    /// The mask bytes of positions `[start, start + count)`.
    @inline(__always)
    public func read(from start: Int, count: Int, into out: UnsafeMutablePointer<UInt8>) {
        precondition(start >= 0 && start + count <= tokenCount, "mask range outside the shard")
        out.update(from: file.base.assumingMemoryBound(to: UInt8.self) + Self.headerBytes + start, count: count)
    }

    /// The sidecar path of a shard: `train-000.bin` -> `train-000.mask`.
    public static func url(forShard shard: URL) -> URL {
        shard.deletingPathExtension().appendingPathExtension(fileExtension)
    }

    /// Writes a mask (one byte per token) under a temporary name, then renames it into place.
    public static func write(_ mask: [UInt8], to url: URL) throws {
        var data = Data(count: headerBytes)
        data.withUnsafeMutableBytes { raw in
            raw.copyBytes(from: magic)
            raw.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt64(mask.count).littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        data.append(contentsOf: mask)
        try writeAtomically(data, to: url)
    }
}

/// A read-only memory mapping of a whole sidecar file.
final class MappedSidecar {
    let base: UnsafeRawPointer
    let size: Int
    private let mapping: UnsafeMutableRawPointer?

    init(url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw DataError("\(url.path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError("\(url.path): cannot stat") }
        size = Int(info.st_size)
        guard size > 0 else { throw DataError("\(url.path): empty file, expected a header") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw DataError("\(url.path): cannot memory-map")
        }
        mapping = map
        base = UnsafeRawPointer(map)
    }

    deinit { if let mapping { munmap(mapping, size) } }
}

/// `data` to `<url>.tmp`, flushed, then renamed over `url`: readers see the old file or the whole new one.
func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.appendingPathExtension("tmp")
    do {
        try data.write(to: temporary)
        let fd = open(temporary.path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary.path, url.path) == 0 else {
            throw DataError("\(url.path): cannot rename \(temporary.lastPathComponent) into place")
        }
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw error
    }
}
