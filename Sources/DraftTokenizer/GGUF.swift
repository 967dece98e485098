import Foundation

/// A metadata value of a GGUF file. Arrays are kept typed: a vocabulary's tokens, scores and merges are large.
enum GGUFValue {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case strings([String])
    case ints([Int64])
    case floats([Double])
    case otherArray(count: Int)

    var integer: Int64? {
        switch self {
        case .uint(let v): return v <= UInt64(Int64.max) ? Int64(v) : nil
        case .int(let v): return v
        default: return nil
        }
    }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
}

/// The key/value metadata of a GGUF file (versions 2 and 3); tensor infos and data are not read.
struct GGUFMetadata {
    let version: UInt32
    let values: [String: GGUFValue]

    /// Parses the header and every key/value pair; truncation or a bad type is an error naming the byte offset.
    init(_ b: UnsafeRawBufferPointer, path: String) throws {
        var r = GGUFReader(b: b, path: path)
        guard b.count >= 4, b.load(as: UInt32.self) == 0x4655_4747 else {
            throw TokenizerError("\(path): not a GGUF file (expected the magic 'GGUF' at byte 0)")
        }
        r.i = 4
        version = try r.u32("the version")
        guard version == 2 || version == 3 else {
            throw TokenizerError("\(path): GGUF version \(version) (expected 2 or 3)")
        }
        _ = try r.u64("the tensor count")
        let kvCount = try r.u64("the metadata count")
        guard kvCount < 1 << 24 else { throw TokenizerError("\(path): implausible metadata count \(kvCount) at byte 16") }
        var values = [String: GGUFValue]()
        for _ in 0..<kvCount {
            let key = try r.string("a metadata key")
            let at = r.i
            let type = try r.u32("the value type of '\(key)'")
            values[key] = try r.value(type: type, key: key, at: at, depth: 0)
        }
        self.values = values
    }
}

private struct GGUFReader {
    let b: UnsafeRawBufferPointer
    let path: String
    var i = 0

    func truncated(_ what: String) -> TokenizerError {
        TokenizerError("\(path): truncated GGUF at byte \(i) (expected \(what))")
    }

    mutating func need(_ n: Int, _ what: String) throws {
        if n < 0 || b.count - i < n { throw truncated(what) }
    }
    mutating func u8(_ w: String) throws -> UInt8 { try need(1, w); defer { i += 1 }; return b[i] }
    mutating func u32(_ w: String) throws -> UInt32 {
        try need(4, w); defer { i += 4 }; return b.loadUnaligned(fromByteOffset: i, as: UInt32.self)
    }
    mutating func u64(_ w: String) throws -> UInt64 {
        try need(8, w); defer { i += 8 }; return b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
    }
    mutating func string(_ w: String) throws -> String {
        let n = try u64("the length of \(w)")
        guard n <= UInt64(b.count) else { i -= 8; throw truncated("\(w) of \(n) bytes") }
        try need(Int(n), "\(w) of \(n) bytes")
        defer { i += Int(n) }
        return String(decoding: UnsafeRawBufferPointer(rebasing: b[i..<(i + Int(n))]), as: UTF8.self)
    }

    mutating func scalar(type: UInt32, _ w: String) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try u8(w)))
        case 1: return .int(Int64(Int8(bitPattern: try u8(w))))
        case 2: try need(2, w); defer { i += 2 }; return .uint(UInt64(b.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
        case 3: try need(2, w); defer { i += 2 }; return .int(Int64(b.loadUnaligned(fromByteOffset: i, as: Int16.self)))
        case 4: return .uint(UInt64(try u32(w)))
        case 5: return .int(Int64(Int32(bitPattern: try u32(w))))
        case 6: return .float(Double(Float(bitPattern: try u32(w))))
        case 7: return .bool(try u8(w) != 0)
        case 8: return .string(try string(w))
        case 10: return .uint(try u64(w))
        case 11: return .int(Int64(bitPattern: try u64(w)))
        case 12: return .float(Double(bitPattern: try u64(w)))
        default: throw TokenizerError("\(path): unknown GGUF value type \(type) at byte \(i) (expected 0...12) in \(w)")
        }
    }

    mutating func value(type: UInt32, key: String, at: Int, depth: Int) throws -> GGUFValue {
        guard type == 9 else { return try scalar(type: type, "the value of '\(key)'") }
        guard depth < 8 else { throw TokenizerError("\(path): arrays nested deeper than 8 at byte \(at) in '\(key)'") }
        let elementType = try u32("the element type of '\(key)'")
        let count = try u64("the length of '\(key)'")
        // Every element takes at least one byte, so a count beyond the file is truncation, not a huge allocation.
        guard count <= UInt64(b.count - i) else { throw truncated("\(count) elements of '\(key)'") }
        let n = Int(count)
        switch elementType {
        case 8:
            var out = [String]()
            out.reserveCapacity(n)
            for k in 0..<n { out.append(try string("element \(k) of '\(key)'")) }
            return .strings(out)
        case 0, 1, 2, 3, 4, 5, 7, 10, 11:
            var out = [Int64]()
            out.reserveCapacity(n)
            for k in 0..<n {
                let v = try scalar(type: elementType, "element \(k) of '\(key)'")
                switch v {
                case .uint(let u): out.append(Int64(truncatingIfNeeded: u))
                case .int(let s): out.append(s)
                case .bool(let f): out.append(f ? 1 : 0)
                default: break
                }
            }
            return .ints(out)
        case 6, 12:
            var out = [Double]()
            out.reserveCapacity(n)
            for k in 0..<n {
                if case .float(let f) = try scalar(type: elementType, "element \(k) of '\(key)'") { out.append(f) }
            }
            return .floats(out)
        case 9:
            for k in 0..<n { _ = try value(type: 9, key: "\(key)[\(k)]", at: i, depth: depth + 1) }
            return .otherArray(count: n)
        default:
            throw TokenizerError("\(path): unknown GGUF array element type \(elementType) at byte \(i - 12) (expected 0...12) in '\(key)'")
        }
    }
}

/// GGUF token types (llama.cpp's `llama_token_type`).
private enum GGUFTokenType {
    static let normal: Int64 = 1, unknown: Int64 = 2, control: Int64 = 3, userDefined: Int64 = 4, unused: Int64 = 5
    static let byte: Int64 = 6
}

/// Loads the tokenizer of a GGUF file (`tokenizer.ggml.*`), tokenizing as llama.cpp does: SentencePiece-style BPE by
/// token scores for `llama`, byte-level BPE by merge rank with the `tokenizer.ggml.pre` split for `gpt2`.
func loadGGUFTokenizer(path: String) throws -> BPETokenizer {
    let data = try readTokenizerFile(path)
    let meta = try data.withUnsafeBytes { try GGUFMetadata($0, path: path) }
    func fail(_ s: String) -> TokenizerError { TokenizerError("\(path): \(s)") }
    let kv = meta.values

    guard let modelName = kv["tokenizer.ggml.model"]?.string else {
        throw fail("no tokenizer in this GGUF (expected the string key tokenizer.ggml.model)")
    }
    guard case .strings(let tokens)? = kv["tokenizer.ggml.tokens"], !tokens.isEmpty else {
        throw fail("expected tokenizer.ggml.tokens to be a non-empty string array")
    }
    let n = tokens.count
    var types = [Int64](repeating: GGUFTokenType.normal, count: n)
    if let v = kv["tokenizer.ggml.token_type"] {
        guard case .ints(let t) = v, t.count == n else {
            throw fail("expected tokenizer.ggml.token_type to be an integer array of \(n) entries")
        }
        types = t
    }
    func tokenID(_ key: String) throws -> Int32? {
        guard let v = kv[key] else { return nil }
        guard let id = v.integer, id >= 0, id < n else { throw fail("expected \(key) to be a token id below \(n)") }
        return Int32(id)
    }
    // llama.cpp's token_to_id: a repeated string maps to its last id.
    let tokenBytes = tokens.map(\.tokenBytes)
    var tokenToID = [TokenBytes: Int32](minimumCapacity: n)
    for (i, t) in tokenBytes.enumerated() { tokenToID[t] = Int32(i) }

    // Control, user-defined and unknown (`<unk>`) tokens are matched in the text before the model, as llama.cpp's
    // special-token pass does and as tokenizers' added tokens are.
    var added = [AddedToken]()
    for (i, t) in tokens.enumerated()
    where types[i] == GGUFTokenType.control || types[i] == GGUFTokenType.userDefined || types[i] == GGUFTokenType.unknown {
        added.append(AddedToken(content: t.tokenBytes, id: Int32(i), lstrip: false, rstrip: false, singleWord: false))
    }

    let model: BPEModel
    let normalizer: (any Normalizer)?
    let pre: (any PreTokenizer)?
    let decoder: (any Decoder)?
    switch modelName {
    case "gpt2":
        guard case .strings(let merges)? = kv["tokenizer.ggml.merges"] else {
            throw fail("expected tokenizer.ggml.merges (a string array) for a gpt2 tokenizer")
        }
        var pairs = PairTable(expected: merges.count)
        for (rank, m) in merges.enumerated() {
            guard let (l, r) = splitMerge(m) else { throw fail("tokenizer.ggml.merges[\(rank)] '\(m)' is not two tokens separated by a blank") }
            guard let a = tokenToID[l], let b = tokenToID[r], let c = tokenToID[l + r] else {
                throw fail("tokenizer.ggml.merges[\(rank)] '\(m)' uses or makes a token missing from tokenizer.ggml.tokens")
            }
            pairs.insert(a, b, rank: Int32(rank), merged: c)
        }
        let preName = kv["tokenizer.ggml.pre"]?.string ?? "default"
        let pattern: [SplitPattern]
        var ignoreMerges = false
        switch preName {
        case "gpt-2", "gpt2": pattern = [.gpt2]
        case "llama-bpe", "llama3", "llama-v3":
            pattern = [.llama3]
            ignoreMerges = true  // llama.cpp sets it for Llama-3, as its tokenizer.json does
        case "qwen2": pattern = [.qwen2]
        case "smollm", "starcoder", "refact": pattern = [.digitsIndividual, .gpt2]
        default:
            throw fail("unsupported tokenizer.ggml.pre '\(preName)' (expected gpt-2, llama-bpe, qwen2 or smollm)")
        }
        // llama.cpp's byte-level BPE drops a byte the vocabulary has no symbol for (SmolLM2 lacks 21 control bytes)
        // rather than emitting tokenizer.ggml.unknown_token_id, as `tokenizers` does without an unk_token.
        _ = try tokenID("tokenizer.ggml.unknown_token_id")
        model = BPEModel(idToToken: tokens, tokenToID: tokenToID, pairs: pairs, initial: .bytes, byteFallback: false,
                         unknownID: nil, fuseUnknown: false,
                         ignoreMerges: ignoreMerges)
        normalizer = nil
        pre = pattern.count == 1 ? PatternPreTokenizer(pattern: pattern[0])
            : SequencePreTokenizer(steps: pattern.map { PatternPreTokenizer(pattern: $0) })
        decoder = ByteLevelDecoder()
    case "llama":
        guard case .floats(let scores)? = kv["tokenizer.ggml.scores"], scores.count == n else {
            throw fail("expected tokenizer.ggml.scores (a float array of \(n) entries) for a llama tokenizer")
        }
        // SentencePiece merges by the score of the token a pair makes, best first, leftmost on ties. Equal scores
        // must tie, so ranks are dense ranks of the scores.
        let distinct = Array(Set(scores)).sorted(by: >)
        var rankOf = [Double: Int32](minimumCapacity: distinct.count)
        for (r, s) in distinct.enumerated() { rankOf[s] = Int32(r) }
        var pairs = PairTable(expected: n * 4)
        for (id, t) in tokenBytes.enumerated() where types[id] != GGUFTokenType.byte {
            let rank = rankOf[scores[id]] ?? Int32.max - 1
            // Every split between two scalars: the byte offsets that do not start a UTF-8 continuation byte.
            for k in 1..<max(t.count, 1) where t[k] & 0xC0 != 0x80 {
                if let a = tokenToID[Array(t[..<k])], let b = tokenToID[Array(t[k...])] {
                    pairs.insert(a, b, rank: rank, merged: Int32(id))
                }
            }
        }
        let addSpacePrefix = kv["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        model = BPEModel(idToToken: tokens, tokenToID: tokenToID, pairs: pairs, initial: .scalars, byteFallback: true,
                         unknownID: try tokenID("tokenizer.ggml.unknown_token_id") ?? 0, fuseUnknown: false,
                         ignoreMerges: false)
        // SentencePiece's dummy prefix, then blanks escaped; prepending `▁` after the escape is the same as a blank
        // before it, and is how a tokenizer.json of the same vocabulary spells it (one description, one fingerprint).
        let escape = ReplaceNormalizer(pattern: [0x20], content: Array("\u{2581}".utf8))
        normalizer = addSpacePrefix
            ? SequenceNormalizer(steps: [PrependNormalizer(prefix: Array("\u{2581}".utf8)), escape]) : escape
        pre = nil
        var steps: [any Decoder] = [ReplaceDecoder(pattern: "\u{2581}", content: " "), ByteFallbackDecoder(), FuseDecoder()]
        if addSpacePrefix { steps.append(StripDecoder(content: " ", start: 1, stop: 0)) }
        decoder = SequenceDecoder(steps: steps)
    default:
        throw fail("unsupported tokenizer.ggml.model '\(modelName)' (expected gpt2 or llama)")
    }
    guard let eos = try tokenID("tokenizer.ggml.eos_token_id") else {
        throw fail("expected tokenizer.ggml.eos_token_id")
    }
    return BPETokenizer(path: path, vocabSize: n, eos: eos,
                        bos: try tokenID("tokenizer.ggml.bos_token_id"), added: added, normalizer: normalizer,
                        preTokenizer: pre, model: model, decoder: decoder)
}
