import Foundation

/// A BPE tokenizer loaded from a Hugging Face `tokenizer.json` or a GGUF file's tokenizer metadata.
///
/// Encoding runs added-token matching → normalizer → pre-tokenizer → BPE model; the ids equal those of Hugging Face
/// `tokenizers` (`add_special_tokens=False`) for tokenizer.json and of llama.cpp for GGUF. Thread-safe: concurrent
/// `encode` calls each borrow their own scratch and word cache from a pool, so caches stay warm across calls.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let vocabSize: Int
    public let eosTokenID: Int32
    public let bosTokenID: Int32?
    /// SHA-256 of the tokenizer's content (``TokenizerFingerprint``), the same for a GGUF and a tokenizer.json of
    /// one tokenizer.
    public let fingerprint: String
    /// The file the tokenizer was loaded from.
    public let path: String

    let added: AddedTokenMatcher
    let normalizer: (any Normalizer)?
    let preTokenizer: (any PreTokenizer)?
    let model: BPEModel
    let decoder: (any Decoder)?
    /// Token strings of added tokens, for decoding (their ids may lie outside the model's vocabulary).
    let addedTokenStrings: [Int32: String]

    private let poolLock = NSLock()
    private var pool: [Session] = []
    private let legacyLock = NSLock()
    private var legacyFingerprint: String?

    init(path: String, vocabSize: Int, eos: Int32, bos: Int32?, added: [AddedToken],
         normalizer: (any Normalizer)?, preTokenizer: (any PreTokenizer)?, model: BPEModel, decoder: (any Decoder)?) {
        self.path = path
        self.fingerprint = TokenizerFingerprint.compute(vocabSize: vocabSize, eos: eos, bos: bos, added: added,
                                                        normalizer: normalizer, preTokenizer: preTokenizer,
                                                        model: model, decoder: decoder)
        self.vocabSize = vocabSize
        self.eosTokenID = eos
        self.bosTokenID = bos
        self.added = AddedTokenMatcher(added)
        self.normalizer = normalizer
        self.model = model
        self.decoder = decoder
        var strings = [Int32: String]()
        for t in added { strings[t.id] = String(decoding: t.content, as: UTF8.self) }
        addedTokenStrings = strings
        if preTokenizer == nil, model.initial == .scalars, Self.metaspaceSplittable(model.idToToken) {
            // Without a pre-tokenizer a SentencePiece-style text is one word; cutting it where no merge can reach
            // gives the same ids with short, cacheable words.
            self.preTokenizer = PatternPreTokenizer(pattern: .metaspaceWords)
        } else {
            self.preTokenizer = preTokenizer
        }
    }

    /// The fingerprint data and checkpoints recorded before content fingerprints (`swiftdraft-tokenizer-v2`): the
    /// SHA-256 of this tokenizer's file, bytes and all. Computed on first use only, since it reads the whole file.
    public func legacyFileFingerprint() throws -> String {
        legacyLock.lock()
        defer { legacyLock.unlock() }
        if let f = legacyFingerprint { return f }
        let data = try readTokenizerFile(path)
        let f = data.withUnsafeBytes { SHA256.hex($0) }
        legacyFingerprint = f
        return f
    }

    /// Also accepts the whole-file hash older shards and checkpoints recorded for this tokenizer's file, so they keep
    /// loading; it is computed only when such an old fingerprint is met.
    public func recognizes(fingerprint recorded: String) -> Bool {
        if recorded == fingerprint { return true }
        guard recorded.utf8.count == 64, recorded.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { return false }
        return (try? legacyFileFingerprint()) == recorded
    }

    /// True when no token has `▁` after a scalar that is not `▁`.
    private static func metaspaceSplittable(_ tokens: [String]) -> Bool {
        for t in tokens {
            var seenOther = false
            for s in t.unicodeScalars {
                if s == "\u{2581}" { if seenOther { return false } } else { seenOther = true }
            }
        }
        return true
    }

    /// The token string of an id (added tokens included), or nil outside the vocabulary.
    public func token(for id: Int32) -> String? {
        if let s = addedTokenStrings[id] { return s }
        return id >= 0 && Int(id) < model.idToToken.count ? model.idToToken[Int(id)] : nil
    }

    /// The id of a token string, or nil.
    public func id(for token: String) -> Int32? {
        // By bytes: `==` on Strings would take U+1F71 for U+03AC.
        if let a = added.tokens.first(where: { $0.content.elementsEqual(token.utf8) }) { return a.id }
        return model.tokenToID[token.tokenBytes]
    }

    // MARK: Encoding

    final class Session {
        let scalars = ScalarBuffer()
        let scratch = EncodeScratch()
        /// Pre-token bytes → ids. HF caches 10K words; code and prose need more to stay warm.
        let cache = ByteStringMap(maxEntries: 1 << 17)
        var pieces: [Range<Int>] = []
    }

    private func takeSession() -> Session {
        poolLock.lock()
        defer { poolLock.unlock() }
        return pool.popLast() ?? Session()
    }

    private func giveBack(_ s: Session) {
        poolLock.lock()
        pool.append(s)
        poolLock.unlock()
    }

    public func encode(_ text: String) -> [Int32] {
        var text = text
        return text.withUTF8 { encode(utf8: $0) }
    }

    /// Encodes valid UTF-8 bytes (what `String.withUTF8` gives).
    public func encode(utf8 bytes: UnsafeBufferPointer<UInt8>) -> [Int32] {
        let s = takeSession()
        defer { giveBack(s) }
        var out = [Int32]()
        out.reserveCapacity(bytes.count / 3 + 8)
        var first = true
        added.forEach(bytes, text: { range in
            if normalizer == nil && !(preTokenizer?.rewrites ?? false) {
                encodeSegment(bytes.baseAddress!, range, s, &out)
            } else {
                var seg = Array(UnsafeBufferPointer(rebasing: bytes[range]))
                normalizer?.normalize(&seg)
                preTokenizer?.rewrite(&seg, first: first)
                seg.withUnsafeBufferPointer { encodeSegment($0.baseAddress!, 0..<$0.count, s, &out) }
            }
            first = false
        }, token: { id in
            out.append(id)
            first = false
        })
        return out
    }

    private func encodeSegment(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ s: Session, _ out: inout [Int32]) {
        if range.isEmpty { return }
        s.pieces.removeAll(keepingCapacity: true)
        if let pre = preTokenizer { pre.split(b, range, s.scalars, into: &s.pieces) } else { s.pieces.append(range) }
        let cache = s.cache
        for p in s.pieces {
            let n = p.count
            let start = b + p.lowerBound
            if n > 256 {
                model.encodeWord(b, p.lowerBound, p.upperBound, s.scratch, into: &out)
                continue
            }
            let h = hashBytes(start, n)
            if cache.find(start, n, h, appendTo: &out) { continue }
            let before = out.count
            model.encodeWord(b, p.lowerBound, p.upperBound, s.scratch, into: &out)
            out.withUnsafeBufferPointer { cache.insert(start, n, h, UnsafeBufferPointer(rebasing: $0[before...])) }
        }
    }

    // MARK: Decoding

    public func decode(_ ids: [Int32]) -> String {
        let tokens = ids.compactMap { token(for: $0) }
        guard let d = decoder else { return tokens.joined() }
        return d.decodeChain(tokens).joined()
    }
}

extension Tokenizer {
    /// Encodes many texts on all cores (one task per text, scheduled dynamically so long files do not leave cores
    /// idle); the result is in input order and equals `texts.map(encode)`.
    public func encodeBatch(_ texts: [String]) -> [[Int32]] {
        var results = [[Int32]](repeating: [], count: texts.count)
        results.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            let next = AtomicCounter()
            let workers = min(texts.count, ProcessInfo.processInfo.activeProcessorCount)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let i = next.increment()
                    if i >= texts.count { break }
                    (base + i).pointee = encode(texts[i])
                }
            }
        }
        return results
    }
}

/// A lock-protected counter handing out work items to `concurrentPerform` workers.
final class AtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}
