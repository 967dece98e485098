import Foundation

/// Open-addressing map from a token pair (left id, right id) to (rank, merged id): the merge table of BPE.
/// Integer keys and a multiplicative hash keep the lookup in the merge loop to a few instructions.
struct PairTable: @unchecked Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let shift: UInt64
    private let mask: Int
    private(set) var count = 0
    static let empty = UInt64.max
    static let none = UInt64.max

    init(expected: Int) {
        var cap = 16
        while cap < expected * 2 { cap <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        mask = cap - 1
        shift = UInt64(64 - cap.trailingZeroBitCount)
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Inserts unless the pair is there already (the first, best-ranked merge of a pair wins, as in `tokenizers`).
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int32, merged: Int32) {
        let k = Self.key(a, b)
        var slot = Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while keys[slot] != Self.empty {
            if keys[slot] == k { return }
            slot = (slot + 1) & mask
        }
        keys[slot] = k
        values[slot] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
        count += 1
    }

    /// `(rank << 32) | merged`, or `none`.
    @inline(__always) func lookup(_ a: Int32, _ b: Int32, _ kp: UnsafePointer<UInt64>, _ vp: UnsafePointer<UInt64>)
        -> UInt64 {
        let k = Self.key(a, b)
        var slot = Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            let s = kp[slot]
            // Empty first: two symbols without ids (-1, -1) make the key UInt64.max, which is also `empty`.
            if s == Self.empty { return Self.none }
            if s == k { return vp[slot] }
            slot = (slot + 1) & mask
        }
    }

    /// Every merge as (rank, left, right, merged), in no particular order.
    func entries() -> [(rank: Int32, left: Int32, right: Int32, merged: Int32)] {
        var out = [(rank: Int32, left: Int32, right: Int32, merged: Int32)]()
        out.reserveCapacity(count)
        for (k, v) in zip(keys, values) where k != Self.empty {
            out.append((rank: Int32(truncatingIfNeeded: v >> 32), left: Int32(truncatingIfNeeded: k >> 32),
                        right: Int32(truncatingIfNeeded: k & 0xFFFF_FFFF), merged: Int32(truncatingIfNeeded: v & 0xFFFF_FFFF)))
        }
        return out
    }

    func withPointers<R>(_ body: (UnsafePointer<UInt64>, UnsafePointer<UInt64>) -> R) -> R {
        keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in body(k.baseAddress!, v.baseAddress!) } }
    }
}

/// Hash of a byte string (FNV-1a over 8-byte words): the word cache and the byte-keyed vocabulary use it.
@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(n)
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + 8 <= n {
        h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x0000_0100_0000_01B3
        h ^= h >> 29
        i += 8
    }
    var tail: UInt64 = 0
    var s: UInt64 = 0
    while i < n { tail |= UInt64(p[i]) << s; s += 8; i += 1 }
    h = (h ^ tail) &* 0x0000_0100_0000_01B3
    h ^= h >> 32
    return h &* 0x9E37_79B9_7F4A_7C15
}

/// A map from byte strings to id sequences, keys and values in flat arenas (no allocation per entry). Used mutable
/// as the per-session word cache and frozen as the byte-keyed vocabulary.
final class ByteStringMap: @unchecked Sendable {
    private var slots: UnsafeMutablePointer<Int32>
    private var slotMask: Int
    private var hashes: [UInt64] = []
    private var keyStart: [Int32] = []
    private var keyLen: [Int32] = []
    private var valStart: [Int32] = []
    private var valLen: [Int32] = []
    private var keyBytes: [UInt8] = []
    private var vals: [Int32] = []
    let maxEntries: Int
    var count: Int { hashes.count }

    init(maxEntries: Int) {
        self.maxEntries = maxEntries
        var cap = 1024
        while cap < maxEntries * 2 { cap <<= 1 }
        slotMask = cap - 1
        slots = .allocate(capacity: cap)
        slots.initialize(repeating: -1, count: cap)
        keyBytes.reserveCapacity(maxEntries * 8)
        vals.reserveCapacity(maxEntries * 2)
    }

    deinit { slots.deallocate() }

    func removeAll() {
        slots.update(repeating: -1, count: slotMask + 1)
        hashes.removeAll(keepingCapacity: true); keyStart.removeAll(keepingCapacity: true)
        keyLen.removeAll(keepingCapacity: true); valStart.removeAll(keepingCapacity: true)
        valLen.removeAll(keepingCapacity: true); keyBytes.removeAll(keepingCapacity: true)
        vals.removeAll(keepingCapacity: true)
    }

    /// Appends the ids stored for the key to `out`; false when absent.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64, appendTo out: inout [Int32]) -> Bool {
        guard let e = entry(p, n, h) else { return false }
        let s = Int(valStart[e]), l = Int(valLen[e])
        if l == 1 { out.append(vals[s]) } else {
            vals.withUnsafeBufferPointer { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[s..<(s + l)])) }
        }
        return true
    }

    /// The single id stored for the key, or nil.
    func single(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32? {
        guard let e = entry(p, n, hashBytes(p, n)), valLen[e] == 1 else { return nil }
        return vals[Int(valStart[e])]
    }

    @inline(__always)
    private func entry(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64) -> Int? {
        var slot = Int(truncatingIfNeeded: h >> 20) & slotMask
        return keyBytes.withUnsafeBufferPointer { kb -> Int? in
            while true {
                let e = Int(slots[slot])
                if e < 0 { return nil }
                if hashes[e] == h && Int(keyLen[e]) == n && memcmp(kb.baseAddress! + Int(keyStart[e]), p, n) == 0 {
                    return e
                }
                slot = (slot + 1) & slotMask
            }
        }
    }

    /// Inserts a key not already present; a full map empties itself first (as a bounded cache should).
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64, _ ids: UnsafeBufferPointer<Int32>) {
        if hashes.count >= maxEntries { removeAll() }
        var slot = Int(truncatingIfNeeded: h >> 20) & slotMask
        while slots[slot] >= 0 { slot = (slot + 1) & slotMask }
        slots[slot] = Int32(hashes.count)
        hashes.append(h)
        keyStart.append(Int32(keyBytes.count)); keyLen.append(Int32(n))
        valStart.append(Int32(vals.count)); valLen.append(Int32(ids.count))
        keyBytes.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
        vals.append(contentsOf: ids)
    }
}

/// How a word's first symbols are made.
enum InitialSymbols: Sendable {
    /// One symbol per byte (byte-level BPE: GPT-2, Llama-3, Qwen2, SmolLM2).
    case bytes
    /// One symbol per Unicode scalar; scalars outside the vocabulary become their bytes' `<0xNN>` tokens
    /// (byte fallback) or the unknown token (SentencePiece-style: Llama-2, Phi-3).
    case scalars
}

/// A token's text as UTF-8 bytes: the key of every vocabulary, merge and added-token lookup. Swift `String` equality
/// is canonical equivalence, so a `[String: ...]` vocabulary folds distinct tokens such as U+03AC and U+1F71 'ά'
/// into one; `tokenizers` and llama.cpp compare code points, which for valid UTF-8 is comparing bytes.
typealias TokenBytes = [UInt8]

extension String {
    /// This string's UTF-8 bytes, the lookup key of a token.
    var tokenBytes: TokenBytes { Array(utf8) }
}

/// Byte-pair encoding over integer ids: initial symbols, then repeatedly the best-ranked adjacent pair (leftmost on
/// ties) is merged, exactly as `tokenizers`' BPE and llama.cpp's BPE/SPM sessions do.
final class BPEModel: @unchecked Sendable {
    let idToToken: [String]
    let tokenToID: [TokenBytes: Int32]
    let pairs: PairTable
    let initial: InitialSymbols
    /// Byte-level: the id of each byte's symbol. Scalars mode: the `<0xNN>` byte-fallback ids (-1 if absent).
    let byteIDs: [Int32]
    /// Scalars mode: id of each BMP scalar's one-scalar token, -1 when absent (astral scalars use `scalarIDsAstral`).
    let scalarIDs: [Int32]
    let scalarIDsAstral: [UInt32: Int32]
    let unknownID: Int32?
    let fuseUnknown: Bool
    /// `ignore_merges` (Llama-3): a word that is itself a token is emitted whole, merges or not.
    let wholeWords: ByteStringMap?

    init(idToToken: [String], tokenToID: [TokenBytes: Int32], pairs: PairTable, initial: InitialSymbols,
         byteFallback: Bool, unknownID: Int32?, fuseUnknown: Bool, ignoreMerges: Bool) {
        self.idToToken = idToToken
        self.tokenToID = tokenToID
        self.pairs = pairs
        self.initial = initial
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
        switch initial {
        case .bytes:
            byteIDs = (0..<256).map { b in tokenToID[String(ByteLevel.byteToScalar[b]).tokenBytes] ?? -1 }
            scalarIDs = []
            scalarIDsAstral = [:]
        case .scalars:
            byteIDs = (0..<256).map { b in
                byteFallback ? (tokenToID[String(format: "<0x%02X>", b).tokenBytes] ?? -1) : -1
            }
            var bmp = [Int32](repeating: -1, count: 0x10000)
            var astral = [UInt32: Int32]()
            for (tok, id) in tokenToID {
                guard let s = Self.singleScalar(tok) else { continue }
                if s < 0x10000 { bmp[Int(s)] = id } else { astral[s] = id }
            }
            scalarIDs = bmp
            scalarIDsAstral = astral
        }
        if ignoreMerges {
            let map = ByteStringMap(maxEntries: tokenToID.count + 1)
            for (tok, id) in tokenToID {
                var raw = [UInt8]()
                if initial == .bytes {
                    guard let r = ByteLevel.unmap(String(decoding: tok, as: UTF8.self)) else { continue }
                    raw = r
                } else {
                    raw = tok
                }
                if raw.isEmpty { continue }
                raw.withUnsafeBufferPointer { rb in
                    let h = hashBytes(rb.baseAddress!, rb.count)
                    var tmp = [Int32]()
                    if !map.find(rb.baseAddress!, rb.count, h, appendTo: &tmp) {
                        withUnsafePointer(to: id) { map.insert(rb.baseAddress!, rb.count, h, UnsafeBufferPointer(start: $0, count: 1)) }
                    }
                }
            }
            wholeWords = map
        } else {
            wholeWords = nil
        }
    }

    /// The scalar value of a token that is exactly one scalar, else nil (keys come from Strings: valid UTF-8).
    static func singleScalar(_ t: TokenBytes) -> UInt32? {
        var scalars = String(decoding: t, as: UTF8.self).unicodeScalars.makeIterator()
        guard let s = scalars.next(), scalars.next() == nil else { return nil }
        return s.value
    }

    /// Encodes one pre-token (`b[start..<end]`), appending its ids; `s` holds the caller's scratch.
    func encodeWord(_ b: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ s: EncodeScratch, into out: inout [Int32]) {
        let n = end - start
        if n == 0 { return }
        if let ww = wholeWords, ww.find(b + start, n, hashBytes(b + start, n), appendTo: &out) { return }
        s.reserve(n)
        let ids = s.ids
        var m = 0
        switch initial {
        case .bytes:
            byteIDs.withUnsafeBufferPointer { bid in
                for i in 0..<n { ids[i] = bid[Int(b[start + i])] }
            }
            m = n
        case .scalars:
            m = scalarSymbols(b, start, end, ids)
        }
        if m > 1 {
            m = pairs.withPointers { kp, vp in
                m <= 48 ? mergeShort(ids, m, s, kp, vp) : mergeLong(ids, m, s, kp, vp)
            }
        }
        var i = 0
        while i < m {
            let id = ids[i]
            if id >= 0 { out.append(id) } else if let unk = unknownID {
                // Negative ids mark scalars with neither a token nor byte fallback.
                if !(fuseUnknown && i > 0 && ids[i - 1] < 0) { out.append(unk) }
            }
            i += 1
        }
    }

    /// Scalars mode: one id per scalar (byte-fallback ids for unknown scalars; -1 for no id at all).
    private func scalarSymbols(_ b: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ ids: UnsafeMutablePointer<Int32>)
        -> Int {
        var m = 0
        var i = start
        scalarIDs.withUnsafeBufferPointer { sid in
            while i < end {
                let c0 = b[i]
                let len = c0 < 0x80 ? 1 : c0 < 0xE0 ? 2 : c0 < 0xF0 ? 3 : 4
                var v: UInt32
                switch len {
                case 1: v = UInt32(c0)
                case 2: v = (UInt32(c0 & 0x1F) << 6) | UInt32(b[i + 1] & 0x3F)
                case 3: v = (UInt32(c0 & 0x0F) << 12) | (UInt32(b[i + 1] & 0x3F) << 6) | UInt32(b[i + 2] & 0x3F)
                default:
                    v = (UInt32(c0 & 0x07) << 18) | (UInt32(b[i + 1] & 0x3F) << 12) | (UInt32(b[i + 2] & 0x3F) << 6)
                        | UInt32(b[i + 3] & 0x3F)
                }
                let id = v < 0x10000 ? sid[Int(v)] : (scalarIDsAstral[v] ?? -1)
                if id >= 0 {
                    ids[m] = id; m += 1
                } else if byteIDs[Int(c0)] >= 0 {
                    for k in 0..<len { ids[m] = byteIDs[Int(b[i + k])]; m += 1 }
                } else {
                    ids[m] = -1; m += 1
                }
                i += len
            }
        }
        return m
    }

    /// Quadratic merge for short words (almost all of them): a rank per adjacent pair, rescan for the minimum.
    @inline(__always)
    private func mergeShort(_ ids: UnsafeMutablePointer<Int32>, _ count: Int, _ s: EncodeScratch,
                            _ kp: UnsafePointer<UInt64>, _ vp: UnsafePointer<UInt64>) -> Int {
        var m = count
        let r = s.ranks  // (rank << 32 | merged) of pair (i, i+1)
        for i in 0..<(m - 1) { r[i] = pairs.lookup(ids[i], ids[i + 1], kp, vp) }
        while m > 1 {
            var best = PairTable.none
            var at = -1
            for i in 0..<(m - 1) where (r[i] >> 32) < (best >> 32) { best = r[i]; at = i }
            if at < 0 { break }
            ids[at] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
            // Drop symbol at+1.
            var k = at + 1
            while k < m - 1 { ids[k] = ids[k + 1]; r[k] = r[k + 1]; k += 1 }
            m -= 1
            if at > 0 { r[at - 1] = pairs.lookup(ids[at - 1], ids[at], kp, vp) }
            if at < m - 1 { r[at] = pairs.lookup(ids[at], ids[at + 1], kp, vp) }
        }
        return m
    }

    /// Heap-driven merge for long words (a whole SentencePiece line, a long run of symbols): O(n log n).
    private func mergeLong(_ ids: UnsafeMutablePointer<Int32>, _ count: Int, _ s: EncodeScratch,
                           _ kp: UnsafePointer<UInt64>, _ vp: UnsafePointer<UInt64>) -> Int {
        let n = count
        s.reserveLong(n)
        let next = s.next, prev = s.prev
        for i in 0..<n { next[i] = Int32(i + 1); prev[i] = Int32(i - 1) }
        next[n - 1] = -1
        // Heap entries: rank << 32 | position; smallest first, so ties go to the leftmost position.
        let heap = s.heap
        var hn = 0
        func push(_ v: UInt64) {
            var i = hn
            heap[i] = v
            hn += 1
            while i > 0 {
                let p = (i - 1) >> 1
                if heap[p] <= heap[i] { break }
                let t = heap[p]; heap[p] = heap[i]; heap[i] = t
                i = p
            }
        }
        func pop() -> UInt64 {
            let top = heap[0]
            hn -= 1
            heap[0] = heap[hn]
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= hn { break }
                var c = l
                if l + 1 < hn && heap[l + 1] < heap[l] { c = l + 1 }
                if heap[i] <= heap[c] { break }
                let t = heap[i]; heap[i] = heap[c]; heap[c] = t
                i = c
            }
            return top
        }
        for i in 0..<(n - 1) {
            let v = pairs.lookup(ids[i], ids[i + 1], kp, vp)
            if v != PairTable.none { push((v & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
        }
        let alive = s.alive
        for i in 0..<n { alive[i] = 1 }
        while hn > 0 {
            let top = pop()
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            guard alive[pos] != 0 else { continue }
            let nx = Int(next[pos])
            guard nx >= 0 else { continue }
            // Stale entries (a neighbour merged since) no longer match the pair's rank; a same-rank stale entry
            // stands for the same merge as the live one, so acting on it changes nothing.
            let v = pairs.lookup(ids[pos], ids[nx], kp, vp)
            guard v != PairTable.none, v >> 32 == rank else { continue }
            ids[pos] = Int32(truncatingIfNeeded: v & 0xFFFF_FFFF)
            alive[nx] = 0
            let nn = next[nx]
            next[pos] = nn
            if nn >= 0 { prev[Int(nn)] = Int32(pos) }
            let pv = Int(prev[pos])
            if pv >= 0 {
                let w = pairs.lookup(ids[pv], ids[pos], kp, vp)
                if w != PairTable.none { push((w & 0xFFFF_FFFF_0000_0000) | UInt64(pv)) }
            }
            if nn >= 0 {
                let w = pairs.lookup(ids[pos], ids[Int(nn)], kp, vp)
                if w != PairTable.none { push((w & 0xFFFF_FFFF_0000_0000) | UInt64(pos)) }
            }
        }
        var m = 0
        var i = 0
        while i >= 0 {
            ids[m] = ids[i]
            m += 1
            i = Int(next[i])
        }
        return m
    }
}

/// Scratch buffers of one encoding session, grown on demand and reused across words.
final class EncodeScratch {
    var ids: UnsafeMutablePointer<Int32>
    var ranks: UnsafeMutablePointer<UInt64>
    var capacity: Int
    var next: UnsafeMutablePointer<Int32>
    var prev: UnsafeMutablePointer<Int32>
    var alive: UnsafeMutablePointer<UInt8>
    var heap: UnsafeMutablePointer<UInt64>
    var longCapacity: Int

    init() {
        capacity = 256
        ids = .allocate(capacity: capacity)
        ranks = .allocate(capacity: capacity)
        longCapacity = 0
        next = .allocate(capacity: 1); prev = .allocate(capacity: 1)
        alive = .allocate(capacity: 1); heap = .allocate(capacity: 1)
    }

    deinit {
        ids.deallocate(); ranks.deallocate(); next.deallocate(); prev.deallocate(); alive.deallocate()
        heap.deallocate()
    }

    /// Room for a word of `n` bytes (a word never has more symbols than bytes).
    @inline(__always) func reserve(_ n: Int) {
        if n > capacity {
            ids.deallocate(); ranks.deallocate()
            capacity = max(n, capacity * 2)
            ids = .allocate(capacity: capacity)
            ranks = .allocate(capacity: capacity)
        }
    }

    func reserveLong(_ n: Int) {
        if n > longCapacity {
            next.deallocate(); prev.deallocate(); alive.deallocate(); heap.deallocate()
            longCapacity = max(n, longCapacity * 2)
            next = .allocate(capacity: longCapacity)
            prev = .allocate(capacity: longCapacity)
            alive = .allocate(capacity: longCapacity)
            // Each merge pushes at most two entries on top of the first n - 1.
            heap = .allocate(capacity: 3 * longCapacity)
        }
    }
}

/// GPT-2's reversible byte ↔ printable-scalar map used by byte-level BPE vocabularies.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var m = [UInt32: UInt8]()
        for (b, s) in byteToScalar.enumerated() { m[s.value] = UInt8(b) }
        return m
    }()

    /// The raw bytes a byte-level token stands for; nil if it has a scalar outside the map (an added token).
    static func unmap(_ token: String) -> [UInt8]? {
        var out = [UInt8]()
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// Like `unmap`, but scalars outside the map keep their own UTF-8 (as `tokenizers`' decoder does).
    static func unmapLenient(_ token: String, into out: inout [UInt8]) {
        for s in token.unicodeScalars {
            if let b = scalarToByte[s.value] { out.append(b) } else { out.append(contentsOf: Array(String(s).utf8)) }
        }
    }
}
