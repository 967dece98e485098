/// The built-in tokenizer: one token per UTF-8 byte (ids 0...255) plus EOS (id 256).
///
/// It needs no file, so the embedded default run and the tests work on a bare machine; real drafts use their
/// target's tokenizer.
public struct ByteTokenizer: Tokenizer {
    public init() {}

    public var vocabSize: Int { 257 }
    public var eosTokenID: Int32 { 256 }
    public var bosTokenID: Int32? { nil }
    public var fingerprint: String { "swiftdraft-bytes-v1" }

    public func encode(_ text: String) -> [Int32] {
        text.utf8.map { Int32($0) }
    }

    public func decode(_ ids: [Int32]) -> String {
        let bytes = ids.compactMap { id -> UInt8? in (0..<256).contains(id) ? UInt8(id) : nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Loads a tokenizer from a specification: `bytes` for the built-in byte tokenizer, else a path to a Hugging Face
/// `tokenizer.json` or a `.gguf` file holding tokenizer metadata.
///
/// A path ending in `.json` is read as a Hugging Face tokenizer.json, one ending in `.gguf` as a GGUF file's
/// tokenizer metadata (both give a ``BPETokenizer``). Anything unusable is a ``TokenizerError`` naming the file.
public func loadTokenizer(_ spec: String) throws -> any Tokenizer {
    if spec == "bytes" { return ByteTokenizer() }
    let lower = spec.lowercased()
    if lower.hasSuffix(".json") { return try loadHFTokenizerJSON(path: spec) }
    if lower.hasSuffix(".gguf") { return try loadGGUFTokenizer(path: spec) }
    throw TokenizerError("\(spec): unsupported tokenizer (expected 'bytes', a tokenizer.json or a .gguf file)")
}
