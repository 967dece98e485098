import DraftErrors
import Foundation

/// A file of token ids, memory-mapped for reading.
///
/// SwiftDraft's own format is a 256-byte little-endian header followed by the ids:
///
///     offset  size  field
///          0     8  magic "SWDTOKEN"
///          8     4  format version (1)
///         12     4  bytes per token (2 or 4)
///         16     8  vocabulary size
///         24     8  token count
///         32     8  document count
///         40    64  tokenizer fingerprint (ASCII, NUL-padded)
///        104   152  zero
///
/// llm.c's `.bin` shards (a 1024-byte header of int32s: magic 20240520, version 1, token count; uint16 ids) are read
/// too; they carry no vocabulary or tokenizer identity.
public final class TokenShard {
    public static let magic = Array("SWDTOKEN".utf8)
    public static let version: UInt32 = 1
    public static let headerBytes = 256
    static let llmcMagic: Int32 = 20_240_520
    static let llmcHeaderBytes = 1024

    public let url: URL
    public let tokenCount: Int
    public let bytesPerToken: Int
    /// nil for llm.c shards.
    public let vocabSize: Int?
    public let documentCount: Int?
    public let tokenizerFingerprint: String?

    private let mapping: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let tokenBase: UnsafeRawPointer

    public init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw DataError("\(url.path): cannot open token shard (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError("\(url.path): cannot stat token shard") }
        let size = Int(info.st_size)
        guard size >= 12 else { throw DataError("\(url.path): truncated token shard: \(size) bytes, shorter than any header") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw DataError("\(url.path): cannot memory-map token shard")
        }
        mapping = map
        mappedBytes = size
        let raw = UnsafeRawPointer(map)
        do {
            if Array(UnsafeRawBufferPointer(start: raw, count: 8)) == Self.magic {
                guard size >= Self.headerBytes else {
                    throw DataError("\(url.path): truncated token shard: \(size) bytes, header needs \(Self.headerBytes)")
                }
                let version = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                guard version == Self.version else {
                    throw DataError("\(url.path): token shard format version \(version), expected \(Self.version)")
                }
                let width = Int(raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                guard width == 2 || width == 4 else {
                    throw DataError("\(url.path): token width \(width) bytes at offset 12, expected 2 or 4")
                }
                bytesPerToken = width
                // A corrupt header can hold any 64-bit value: a count that does not fit the file is an error, not
                // an arithmetic trap.
                let rawVocab = raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
                let rawCount = raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
                let rawDocuments = raw.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
                let limit = UInt64(size)
                guard rawVocab > 0, rawVocab <= UInt64(UInt32.max) + 1 else {
                    throw DataError("\(url.path): vocabulary size \(rawVocab) at offset 16, expected 1 to 2^32")
                }
                guard rawCount <= limit / UInt64(width), rawDocuments <= limit else {
                    throw DataError("\(url.path): truncated token shard: \(size) bytes, header promises \(rawCount) tokens of \(width) bytes at offset 24")
                }
                vocabSize = Int(rawVocab)
                tokenCount = Int(rawCount)
                documentCount = Int(rawDocuments)
                let fingerprintBytes = UnsafeRawBufferPointer(start: raw + 40, count: 64).prefix { $0 != 0 }
                tokenizerFingerprint = String(decoding: fingerprintBytes, as: UTF8.self)
                tokenBase = raw + Self.headerBytes
                let expected = Self.headerBytes + tokenCount * width
                guard size == expected else {
                    throw DataError("\(url.path): truncated token shard: \(size) bytes, header promises \(expected)")
                }
            } else if raw.loadUnaligned(as: Int32.self) == Self.llmcMagic {
                guard size >= Self.llmcHeaderBytes else {
                    throw DataError("\(url.path): truncated llm.c shard: \(size) bytes, header needs \(Self.llmcHeaderBytes)")
                }
                let version = raw.loadUnaligned(fromByteOffset: 4, as: Int32.self)
                guard version == 1 else {
                    throw DataError("\(url.path): llm.c shard version \(version), expected 1 (uint16 tokens)")
                }
                bytesPerToken = 2
                let count = raw.loadUnaligned(fromByteOffset: 8, as: Int32.self)
                guard count >= 0 else {
                    throw DataError("\(url.path): llm.c shard token count \(count) at offset 8, expected a non-negative int32")
                }
                tokenCount = Int(count)
                vocabSize = nil
                documentCount = nil
                tokenizerFingerprint = nil
                tokenBase = raw + Self.llmcHeaderBytes
                let expected = Self.llmcHeaderBytes + tokenCount * 2
                guard size == expected else {
                    throw DataError("\(url.path): truncated llm.c shard: \(size) bytes, header promises \(expected)")
                }
            } else {
                throw DataError("\(url.path): not a token shard (expected magic 'SWDTOKEN' or llm.c's 20240520)")
            }
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(mapping, mappedBytes) }

    /// Copies ids `[start, start + count)` into `out` as Int32.
    @inline(__always)
    public func read(from start: Int, count: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && start + count <= tokenCount, "token range outside the shard")
        if bytesPerToken == 2 {
            let src = tokenBase.assumingMemoryBound(to: UInt16.self) + start
            for i in 0..<count { out[i] = Int32(UInt16(littleEndian: src[i])) }
        } else {
            let src = tokenBase.assumingMemoryBound(to: UInt32.self) + start
            for i in 0..<count { out[i] = Int32(bitPattern: UInt32(littleEndian: src[i])) }
        }
    }

    /// The largest id in the shard (a full scan: used once when a run opens its data).
    public func maxTokenID() -> Int {
        var maximum: Int32 = -1
        let chunk = 1 << 16
        var buffer = [Int32](repeating: 0, count: chunk)
        var start = 0
        while start < tokenCount {
            let n = min(chunk, tokenCount - start)
            buffer.withUnsafeMutableBufferPointer { read(from: start, count: n, into: $0.baseAddress!) }
            for i in 0..<n where buffer[i] > maximum { maximum = buffer[i] }
            start += n
        }
        return Int(maximum)
    }
}

/// Writes a SwiftDraft token shard to `<path>.tmp` and renames it into place when complete, so a crash or bad input
/// never leaves a partial shard under the final name.
public struct TokenShardWriter {
    public static func write(_ tokens: [Int32], documents: Int, vocabSize: Int, fingerprint: String, to url: URL) throws {
        let width = vocabSize <= 65_536 ? 2 : 4
        var data = Data(count: TokenShard.headerBytes)
        data.withUnsafeMutableBytes { raw in
            raw.copyBytes(from: TokenShard.magic)
            raw.storeBytes(of: TokenShard.version.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(width).littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: UInt64(vocabSize).littleEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: UInt64(tokens.count).littleEndian, toByteOffset: 24, as: UInt64.self)
            raw.storeBytes(of: UInt64(documents).littleEndian, toByteOffset: 32, as: UInt64.self)
            let fp = Array(fingerprint.utf8.prefix(64))
            for (i, b) in fp.enumerated() { raw[40 + i] = b }
        }
        data.reserveCapacity(TokenShard.headerBytes + tokens.count * width)
        if width == 2 {
            let narrow = tokens.map { UInt16(truncatingIfNeeded: $0).littleEndian }
            narrow.withUnsafeBytes { data.append(contentsOf: $0) }
        } else {
            let wide = tokens.map { UInt32(bitPattern: $0).littleEndian }
            wide.withUnsafeBytes { data.append(contentsOf: $0) }
        }
        let temporary = url.appendingPathExtension("tmp")
        do {
            try data.write(to: temporary)
            guard rename(temporary.path, url.path) == 0 else {
                throw DataError("\(url.path): cannot rename \(temporary.lastPathComponent) into place")
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
    }
}

/// Unusable data: the message names the file (or config key) and what was expected.
public struct DataError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
