import DraftErrors
import Foundation

/// The target's top-K log-probabilities at the trained positions of one `TokenShard`, memory-mapped from its `.topk`
/// sidecar, for token-level knowledge distillation.
///
/// Only positions with a row cost K entries (response tokens; prompts have none), so a per-position row index maps
/// a position to its row:
///
///     offset          size            field
///          0             8            magic "SWDTOPK1"
///          8             4            format version (1)
///         12             4            K
///         16             8            token count (equal to the shard's)
///         24             8            row count R
///         32             4            bytes per id (2 or 4)
///         36            28            zero
///         64        4 * tokens        row of each position (uint32; 0xFFFFFFFF: none)
///          .    width * R * K         ids, row-major [R][K], most likely first (padded to 4 bytes)
///          .        4 * R * K         log-probabilities (float32), same layout
///
/// A row at position t is the target's distribution for predicting token t from tokens < t (log-softmax of its
/// logits at temperature 1, whatever temperature the response was sampled at).
public final class TeacherTopKShard {
    public static let magic = Array("SWDTOPK1".utf8)
    public static let version: UInt32 = 1
    public static let headerBytes = 64
    public static let fileExtension = "topk"
    static let noRow = UInt32.max

    public let url: URL
    public let k: Int
    public let tokenCount: Int
    public let rowCount: Int
    private let file: MappedSidecar
    private let rowIndex: UnsafePointer<UInt32>
    private let idBase: UnsafeRawPointer
    private let idWidth: Int
    private let logprobBase: UnsafePointer<Float>

    public init(url: URL) throws {
        self.url = url
        file = try MappedSidecar(url: url)
        let raw = file.base
        guard file.size >= Self.headerBytes, Array(UnsafeRawBufferPointer(start: raw, count: 8)) == Self.magic else {
            throw DataError("\(url.path): not a top-K file (expected magic 'SWDTOPK1' and a \(Self.headerBytes)-byte header)")
        }
        let version = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard version == Self.version else {
            throw DataError("\(url.path): top-K format version \(version), expected \(Self.version)")
        }
        let k = Int(raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        let tokens = raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        let rows = raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        let width = Int(raw.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        let limit = UInt64(file.size)
        guard k >= 1, width == 2 || width == 4, tokens <= limit / 4, rows <= limit / UInt64(k) else {
            throw DataError("\(url.path): top-K header (K \(k), \(tokens) tokens, \(rows) rows, \(width)-byte ids) does not fit its \(file.size) bytes")
        }
        self.k = k
        tokenCount = Int(tokens)
        rowCount = Int(rows)
        idWidth = width
        let layout = Self.layout(tokens: tokenCount, rows: rowCount, k: k, idWidth: width)
        guard file.size == layout.total else {
            throw DataError("\(url.path): truncated top-K file: \(file.size) bytes, header promises \(layout.total)")
        }
        rowIndex = (raw + Self.headerBytes).assumingMemoryBound(to: UInt32.self)
        idBase = raw + layout.ids
        logprobBase = (raw + layout.logprobs).assumingMemoryBound(to: Float.self)
        for t in 0..<tokenCount where rowIndex[t] != Self.noRow && Int(rowIndex[t]) >= rowCount {
            throw DataError("\(url.path): position \(t) names row \(rowIndex[t]) of \(rowCount)")
        }
    }

    static func layout(tokens: Int, rows: Int, k: Int, idWidth: Int) -> (ids: Int, logprobs: Int, total: Int) {
        let ids = headerBytes + 4 * tokens
        let idBytes = (idWidth * rows * k + 3) / 4 * 4
        return (ids, ids + idBytes, ids + idBytes + 4 * rows * k)
    }

    /// Rows for positions [start, start+count): row t = the target's top-K for predicting token t from tokens < t;
    /// ids -1 (and logprob 0) where there is none (prompt/context positions). Row-major [count][k].
    public func read(from start: Int, count: Int, ids: UnsafeMutablePointer<Int32>, logprobs: UnsafeMutablePointer<Float>) {
        precondition(start >= 0 && start + count <= tokenCount, "top-K range outside the shard")
        for i in 0..<count {
            let row = rowIndex[start + i]
            let outIDs = ids + i * k, outLogprobs = logprobs + i * k
            if row == Self.noRow {
                outIDs.update(repeating: -1, count: k)
                outLogprobs.update(repeating: 0, count: k)
                continue
            }
            let first = Int(row) * k
            if idWidth == 2 {
                let src = idBase.assumingMemoryBound(to: UInt16.self) + first
                for j in 0..<k { outIDs[j] = Int32(UInt16(littleEndian: src[j])) }
            } else {
                let src = idBase.assumingMemoryBound(to: UInt32.self) + first
                for j in 0..<k { outIDs[j] = Int32(bitPattern: UInt32(littleEndian: src[j])) }
            }
            outLogprobs.update(from: logprobBase + first, count: k)
        }
    }

    /// The sidecar path of a shard: `train-000.bin` -> `train-000.topk`.
    public static func url(forShard shard: URL) -> URL {
        shard.deletingPathExtension().appendingPathExtension(fileExtension)
    }

    /// Writes a top-K sidecar: `rows[t]` is position t's K (id, logprob) pairs, or nil for none.
    public static func write(rows: [[(id: Int32, logprob: Float)]?], k: Int, vocabSize: Int, to url: URL) throws {
        let width = vocabSize <= 65_536 ? 2 : 4
        let rowCount = rows.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
        let layout = layout(tokens: rows.count, rows: rowCount, k: k, idWidth: width)
        var data = Data(count: layout.total)
        try data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            raw.copyBytes(from: magic)
            raw.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(k).littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: UInt64(rows.count).littleEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: UInt64(rowCount).littleEndian, toByteOffset: 24, as: UInt64.self)
            raw.storeBytes(of: UInt32(width).littleEndian, toByteOffset: 32, as: UInt32.self)
            var next = 0
            for (t, row) in rows.enumerated() {
                guard let row else {
                    raw.storeBytes(of: noRow, toByteOffset: headerBytes + 4 * t, as: UInt32.self)
                    continue
                }
                guard row.count == k else { throw DataError("\(url.path): position \(t) has \(row.count) top-K entries, expected \(k)") }
                raw.storeBytes(of: UInt32(next).littleEndian, toByteOffset: headerBytes + 4 * t, as: UInt32.self)
                for (j, entry) in row.enumerated() {
                    let slot = next * k + j
                    if width == 2 {
                        raw.storeBytes(of: UInt16(truncatingIfNeeded: entry.id).littleEndian, toByteOffset: layout.ids + 2 * slot, as: UInt16.self)
                    } else {
                        raw.storeBytes(of: UInt32(bitPattern: entry.id).littleEndian, toByteOffset: layout.ids + 4 * slot, as: UInt32.self)
                    }
                    raw.storeBytes(of: entry.logprob, toByteOffset: layout.logprobs + 4 * slot, as: Float.self)
                }
                next += 1
            }
        }
        try writeAtomically(data, to: url)
    }
}
