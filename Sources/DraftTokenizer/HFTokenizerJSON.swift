import Foundation

// Builds a BPETokenizer from a Hugging Face tokenizer.json: one factory per pipeline stage, each mapping a JSON
// object's "type" to an implementation; anything not implemented is a TokenizerError naming the type.

struct HFConfigReader {
    let path: String

    func fail(_ what: String) -> TokenizerError { TokenizerError("\(path): \(what)") }

    func type(_ j: JSON, _ stage: String) throws -> String {
        guard let t = j["type"]?.string else { throw fail("\(stage) without a string \"type\"") }
        return t
    }

    func normalizer(_ j: JSON) throws -> (any Normalizer)? {
        if j.isNull { return nil }
        let t = try type(j, "normalizer")
        switch t {
        case "Sequence":
            guard let list = j["normalizers"]?.array else { throw fail("normalizer Sequence without a \"normalizers\" array") }
            return SequenceNormalizer(steps: try list.compactMap { try normalizer($0) })
        case "Prepend":
            guard let p = j["prepend"]?.string else { throw fail("normalizer Prepend without a string \"prepend\"") }
            return PrependNormalizer(prefix: Array(p.utf8))
        case "Replace":
            let (pattern, content) = try literalReplace(j, "normalizer")
            return ReplaceNormalizer(pattern: Array(pattern.utf8), content: Array(content.utf8))
        case "NFC": return UnicodeFormNormalizer(form: .nfc)
        case "NFD": return UnicodeFormNormalizer(form: .nfd)
        case "NFKC": return UnicodeFormNormalizer(form: .nfkc)
        case "NFKD": return UnicodeFormNormalizer(form: .nfkd)
        case "Lowercase": return LowercaseNormalizer()
        default:
            throw fail("unsupported normalizer type '\(t)' (expected Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD or Lowercase)")
        }
    }

    func literalReplace(_ j: JSON, _ stage: String) throws -> (String, String) {
        guard let content = j["content"]?.string else { throw fail("\(stage) Replace without a string \"content\"") }
        if let s = j["pattern"]?["String"]?.string { return (s, content) }
        if let r = j["pattern"]?["Regex"]?.string {
            throw fail("unsupported \(stage) Replace with a regex pattern '\(r)' (expected a String pattern)")
        }
        throw fail("\(stage) Replace without a \"pattern\" {\"String\": ...}")
    }

    func preTokenizer(_ j: JSON) throws -> (any PreTokenizer)? {
        if j.isNull { return nil }
        let t = try type(j, "pre_tokenizer")
        switch t {
        case "Sequence":
            guard let list = j["pretokenizers"]?.array else {
                throw fail("pre_tokenizer Sequence without a \"pretokenizers\" array")
            }
            return SequencePreTokenizer(steps: try list.compactMap { try preTokenizer($0) })
        case "ByteLevel":
            return ByteLevelPreTokenizer(addPrefixSpace: j["add_prefix_space"]?.bool ?? false,
                                         useRegex: j["use_regex"]?.bool ?? true)
        case "Digits":
            return PatternPreTokenizer(pattern: (j["individual_digits"]?.bool ?? false) ? .digitsIndividual : .digits)
        case "Split":
            guard let regex = j["pattern"]?["Regex"]?.string else {
                throw fail("unsupported pre_tokenizer Split without a \"pattern\" {\"Regex\": ...} (only regex splits are implemented)")
            }
            let behavior = j["behavior"]?.string ?? "Isolated"
            let invert = j["invert"]?.bool ?? false
            guard behavior == "Isolated", !invert else {
                throw fail("unsupported pre_tokenizer Split behavior '\(behavior)'\(invert ? " inverted" : "") (expected Isolated)")
            }
            guard let p = SplitPattern.forRegex(regex) else {
                throw fail("unsupported pre_tokenizer Split regex '\(regex)' (expected the GPT-2, Llama-3 or Qwen2 pattern)")
            }
            return PatternPreTokenizer(pattern: p)
        case "Metaspace":
            let replacement = j["replacement"]?.string ?? "\u{2581}"
            var scheme = MetaspacePreTokenizer.Scheme.always
            if let s = j["prepend_scheme"]?.string {
                switch s {
                case "always": scheme = .always
                case "first": scheme = .first
                case "never": scheme = .never
                default: throw fail("pre_tokenizer Metaspace prepend_scheme '\(s)' (expected always, first or never)")
                }
            } else if let add = j["add_prefix_space"]?.bool {
                scheme = add ? .always : .never
            }
            return MetaspacePreTokenizer(replacement: Array(replacement.utf8), scheme: scheme,
                                         splitWords: j["split"]?.bool ?? true)
        default:
            throw fail("unsupported pre_tokenizer type '\(t)' (expected Sequence, ByteLevel, Digits, Split or Metaspace)")
        }
    }

    func decoder(_ j: JSON) throws -> (any Decoder)? {
        if j.isNull { return nil }
        let t = try type(j, "decoder")
        switch t {
        case "Sequence":
            guard let list = j["decoders"]?.array else { throw fail("decoder Sequence without a \"decoders\" array") }
            return SequenceDecoder(steps: try list.compactMap { try decoder($0) })
        case "ByteLevel": return ByteLevelDecoder()
        case "Replace":
            let (pattern, content) = try literalReplace(j, "decoder")
            return ReplaceDecoder(pattern: pattern, content: content)
        case "ByteFallback": return ByteFallbackDecoder()
        case "Fuse": return FuseDecoder()
        case "Strip":
            guard let c = j["content"]?.string, c.count == 1 else { throw fail("decoder Strip without a one-character \"content\"") }
            return StripDecoder(content: c.first!, start: j["start"]?.int ?? 0, stop: j["stop"]?.int ?? 0)
        case "Metaspace":
            let scheme = j["prepend_scheme"]?.string ?? ((j["add_prefix_space"]?.bool ?? true) ? "always" : "never")
            return MetaspaceDecoder(replacement: j["replacement"]?.string ?? "\u{2581}", stripFirst: scheme != "never")
        default:
            throw fail("unsupported decoder type '\(t)' (expected Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip or Metaspace)")
        }
    }

    /// Post-processors only add special tokens, which `encode` never does (`add_special_tokens=False`); they are
    /// checked so a file this code does not understand is still refused.
    func checkPostProcessor(_ j: JSON) throws {
        if j.isNull { return }
        let t = try type(j, "post_processor")
        switch t {
        case "TemplateProcessing", "ByteLevel", "RobertaProcessing", "BertProcessing": return
        case "Sequence":
            for p in j["processors"]?.array ?? [] { try checkPostProcessor(p) }
        default:
            throw fail("unsupported post_processor type '\(t)' (expected TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing or Sequence)")
        }
    }

    /// True when the pipeline maps bytes to GPT-2's printable scalars (a ByteLevel pre-tokenizer somewhere).
    func usesByteLevel(_ j: JSON) -> Bool {
        if j.isNull { return false }
        if j["type"]?.string == "ByteLevel" { return true }
        return (j["pretokenizers"]?.array ?? []).contains { usesByteLevel($0) }
    }
}

/// Ids beyond any real vocabulary (the largest have ~260K tokens) are refused before they size the id table.
let maxTokenID = 1 << 24

/// Loads a Hugging Face tokenizer.json whose model is BPE.
func loadHFTokenizerJSON(path: String) throws -> BPETokenizer {
    let data = try readTokenizerFile(path)
    let reader = HFConfigReader(path: path)
    let root: JSON
    do {
        root = try data.withUnsafeBytes { try JSON.parse($0.bindMemory(to: UInt8.self)) }
    } catch let e as JSONParseError {
        throw reader.fail("malformed JSON at byte \(e.offset): expected \(e.expected)")
    }
    guard root.object != nil else { throw reader.fail("expected a JSON object at the top level") }
    guard let model = root["model"], model.object != nil else { throw reader.fail("expected a \"model\" object") }
    let modelType = model["type"]?.string ?? "BPE"
    guard modelType == "BPE" else {
        throw reader.fail("unsupported model type '\(modelType)' (expected BPE)")
    }
    guard let vocabJSON = model["vocab"]?.object else { throw reader.fail("expected model.vocab to be an object") }
    guard let mergesJSON = model["merges"]?.array else { throw reader.fail("expected model.merges to be an array") }
    if let d = model["dropout"]?.double, d > 0 {
        throw reader.fail("model.dropout \(d) makes encoding random (expected null or 0)")
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let s = model[key]?.string, !s.isEmpty { throw reader.fail("unsupported model.\(key) '\(s)' (expected empty)") }
    }

    var tokenToID = [TokenBytes: Int32](minimumCapacity: vocabJSON.count)
    var maxID = -1
    for (tok, v) in vocabJSON {
        guard let id = v.int, id >= 0, id < maxTokenID else {
            throw reader.fail("model.vocab['\(tok)'] is not a token id (expected an integer in 0..<\(maxTokenID))")
        }
        tokenToID[tok.tokenBytes] = Int32(id)
        maxID = max(maxID, id)
    }
    var addedTokens = [AddedToken]()
    for (k, a) in (root["added_tokens"]?.array ?? []).enumerated() {
        guard let content = a["content"]?.string, let id = a["id"]?.int, id >= 0, id < maxTokenID else {
            throw reader.fail("added_tokens[\(k)] needs a string \"content\" and an integer \"id\"")
        }
        addedTokens.append(AddedToken(content: Array(content.utf8), id: Int32(id), lstrip: a["lstrip"]?.bool ?? false,
                                      rstrip: a["rstrip"]?.bool ?? false, singleWord: a["single_word"]?.bool ?? false))
        maxID = max(maxID, id)
    }
    var idToToken = [String](repeating: "", count: maxID + 1)
    for (tok, id) in tokenToID { idToToken[Int(id)] = String(decoding: tok, as: UTF8.self) }
    for a in addedTokens where idToToken[Int(a.id)].isEmpty { idToToken[Int(a.id)] = String(decoding: a.content, as: UTF8.self) }

    var pairs = PairTable(expected: mergesJSON.count)
    for (rank, m) in mergesJSON.enumerated() {
        let left: TokenBytes, right: TokenBytes
        if let s = m.string {
            guard let (l, r) = splitMerge(s) else { throw reader.fail("model.merges[\(rank)] '\(s)' is not two tokens separated by a blank") }
            left = l; right = r
        } else if let pair = m.array, pair.count == 2, let l = pair[0].string, let r = pair[1].string {
            left = l.tokenBytes; right = r.tokenBytes
        } else {
            throw reader.fail("model.merges[\(rank)] is neither \"a b\" nor [\"a\", \"b\"]")
        }
        func text(_ t: TokenBytes) -> String { String(decoding: t, as: UTF8.self) }
        guard let a = tokenToID[left], let b = tokenToID[right] else {
            throw reader.fail("model.merges[\(rank)] uses a token missing from model.vocab ('\(text(left))' '\(text(right))')")
        }
        guard let merged = tokenToID[left + right] else {
            throw reader.fail("model.merges[\(rank)] makes '\(text(left + right))', which is missing from model.vocab")
        }
        pairs.insert(a, b, rank: Int32(rank), merged: merged)
    }

    let normalizer = try reader.normalizer(root["normalizer"] ?? .null)
    let pre = try reader.preTokenizer(root["pre_tokenizer"] ?? .null)
    let decoder = try reader.decoder(root["decoder"] ?? .null)
    try reader.checkPostProcessor(root["post_processor"] ?? .null)
    let byteLevel = reader.usesByteLevel(root["pre_tokenizer"] ?? .null)

    var unknownID: Int32?
    if let u = model["unk_token"]?.string {
        guard let id = tokenToID[u.tokenBytes] else { throw reader.fail("model.unk_token '\(u)' is missing from model.vocab") }
        unknownID = id
    }
    let bpe = BPEModel(idToToken: idToToken, tokenToID: tokenToID, pairs: pairs, initial: byteLevel ? .bytes : .scalars,
                       byteFallback: model["byte_fallback"]?.bool ?? false, unknownID: unknownID,
                       fuseUnknown: model["fuse_unk"]?.bool ?? false, ignoreMerges: model["ignore_merges"]?.bool ?? false)

    // tokenizer.json does not say which token ends a document; tokenizer_config.json beside it does.
    let names = Dictionary(addedTokens.map { ($0.content, $0.id) }, uniquingKeysWith: { a, _ in a })
        .merging(tokenToID, uniquingKeysWith: { a, _ in a })
    let config = specialTokenNames(configBeside: path)
    func resolve(_ configured: String?, _ fallbacks: [String]) -> Int32? {
        if let c = configured, let id = names[c.tokenBytes] { return id }
        for f in fallbacks { if let id = names[f.tokenBytes] { return id } }
        return nil
    }
    guard let eos = resolve(config.eos, ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>"]) else {
        throw reader.fail("no end-of-sequence token (expected eos_token in tokenizer_config.json beside it, or an added token <|endoftext|>, </s> or <|end_of_text|>)")
    }
    let bos = resolve(config.bos, ["<s>", "<|begin_of_text|>", "<bos>"])
    return BPETokenizer(path: path, vocabSize: maxID + 1, eos: eos, bos: bos,
                        added: addedTokens, normalizer: normalizer, preTokenizer: pre, model: bpe, decoder: decoder)
}

/// A merge written "left right": split at the first blank byte. Not `firstIndex(of: " ")`, which looks for a whole
/// Character: a blank followed by a combining mark is one Character, so it would split elsewhere or not at all.
func splitMerge(_ s: String) -> (TokenBytes, TokenBytes)? {
    let u = s.tokenBytes
    guard let sp = u.firstIndex(of: 0x20) else { return nil }
    return (Array(u[..<sp]), Array(u[(sp + 1)...]))
}

/// bos_token / eos_token of a tokenizer_config.json next to the tokenizer.json, if any.
private func specialTokenNames(configBeside path: String) -> (bos: String?, eos: String?) {
    let url = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
    guard let data = try? Data(contentsOf: url),
          let j = try? data.withUnsafeBytes({ try JSON.parse($0.bindMemory(to: UInt8.self)) }) else { return (nil, nil) }
    func name(_ v: JSON?) -> String? { v?.string ?? v?["content"]?.string }
    return (name(j["bos_token"]), name(j["eos_token"]))
}

/// Reads a tokenizer file whole (memory-mapped when possible: a GGUF model can be hundreds of MB).
func readTokenizerFile(_ path: String) throws -> Data {
    do {
        return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
    } catch {
        throw TokenizerError("\(path): cannot read the tokenizer file (\((error as NSError).localizedDescription))")
    }
}
