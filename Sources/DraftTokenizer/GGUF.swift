import DraftFormats
import Foundation

/// GGUF token types (llama.cpp's `llama_token_type`).
private enum GGUFTokenType {
    static let normal: Int64 = 1, unknown: Int64 = 2, control: Int64 = 3, userDefined: Int64 = 4, unused: Int64 = 5
    static let byte: Int64 = 6
}

/// Loads the tokenizer of a GGUF file (`tokenizer.ggml.*`), tokenizing as llama.cpp does: SentencePiece-style BPE by
/// token scores for `llama`, byte-level BPE by merge rank with the `tokenizer.ggml.pre` split for `gpt2`.
func loadGGUFTokenizer(path: String) throws -> BPETokenizer {
    let data = try readTokenizerFile(path)
    // The header and key/values only (DraftFormats' reader); its FormatErrors become this module's error type.
    let meta: GGUFMetadata
    do { meta = try data.withUnsafeBytes { try GGUFMetadata(bytes: $0, path: path) } } catch let e as FormatError {
        throw TokenizerError(e.message)
    }
    func fail(_ s: String) -> TokenizerError { TokenizerError("\(path): \(s)") }
    let kv = meta.values

    guard let modelName = kv["tokenizer.ggml.model"]?.string else {
        throw fail("no tokenizer in this GGUF (expected the string key tokenizer.ggml.model)")
    }
    guard let tokens = kv["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
        throw fail("expected tokenizer.ggml.tokens to be a non-empty string array")
    }
    let n = tokens.count
    var types = [Int64](repeating: GGUFTokenType.normal, count: n)
    if let v = kv["tokenizer.ggml.token_type"] {
        guard let t = v.integers, t.count == n else {
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
        guard let merges = kv["tokenizer.ggml.merges"]?.strings else {
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
        guard let scores = kv["tokenizer.ggml.scores"]?.floats, scores.count == n else {
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
