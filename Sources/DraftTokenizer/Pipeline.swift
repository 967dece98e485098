import Foundation

// The stages of a tokenizer pipeline (normalizer → pre-tokenizer → model → decoder), each a small protocol with the
// implementations Llama-2/Phi-3, Llama-3, GPT-2, Qwen2 and SmolLM2 use. They work on UTF-8 bytes and byte ranges so
// the encode path never builds Strings.

/// Rewrites a text segment (the part between added tokens) before it is split.
protocol Normalizer: Sendable {
    func normalize(_ text: inout [UInt8])
    /// What this stage does, one line per elementary step (sequences flattened), for the tokenizer's fingerprint:
    /// equal lists mean equal behaviour, however the file spelled the stage.
    var canonicalSteps: [String] { get }
}

/// Splits a segment into pre-tokens; the model encodes each independently (and the word cache keys on them).
protocol PreTokenizer: Sendable {
    /// Whether `rewrite` can change the text (then the segment is copied first).
    var rewrites: Bool { get }
    /// Rewrites the segment before splitting (Metaspace turns blanks into `▁`); `first` is the text's first segment.
    func rewrite(_ text: inout [UInt8], first: Bool)
    /// Appends the byte ranges of the pieces of `b[range]`.
    func split(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ sc: ScalarBuffer, into out: inout [Range<Int>])
    /// As `Normalizer.canonicalSteps`.
    var canonicalSteps: [String] { get }
}

/// Turns token strings back into text pieces (`tokenizers`' decode chain).
protocol Decoder: Sendable {
    func decodeChain(_ tokens: [String]) -> [String]
    /// As `Normalizer.canonicalSteps`.
    var canonicalSteps: [String] { get }
}

/// Bytes as hex, so a step's parameters are unambiguous in its canonical line.
func hexBytes(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

// MARK: Normalizers

struct SequenceNormalizer: Normalizer {
    let steps: [any Normalizer]
    func normalize(_ text: inout [UInt8]) { for s in steps { s.normalize(&text) } }
    var canonicalSteps: [String] { steps.flatMap(\.canonicalSteps) }
}

/// `Prepend`: adds a prefix to a non-empty segment (SentencePiece's dummy prefix).
struct PrependNormalizer: Normalizer {
    let prefix: [UInt8]
    func normalize(_ text: inout [UInt8]) { if !text.isEmpty { text.insert(contentsOf: prefix, at: 0) } }
    var canonicalSteps: [String] { ["prepend \(hexBytes(prefix))"] }
}

/// `Replace` with a literal pattern (SentencePiece's blank → `▁`).
struct ReplaceNormalizer: Normalizer {
    let pattern: [UInt8]
    let content: [UInt8]
    func normalize(_ text: inout [UInt8]) { text = replaceAll(text, pattern, content) }
    var canonicalSteps: [String] { ["replace \(hexBytes(pattern)) \(hexBytes(content))"] }
}

/// Unicode normalization forms (Qwen2's tokenizer.json asks for NFC). ASCII text is already in every form.
struct UnicodeFormNormalizer: Normalizer {
    enum Form: String, Sendable { case nfc, nfd, nfkc, nfkd }
    let form: Form
    var canonicalSteps: [String] { [form.rawValue] }
    func normalize(_ text: inout [UInt8]) {
        if !text.contains(where: { $0 >= 0x80 }) { return }
        let s = String(decoding: text, as: UTF8.self)
        let n: String
        switch form {
        case .nfc: n = s.precomposedStringWithCanonicalMapping
        case .nfd: n = s.decomposedStringWithCanonicalMapping
        case .nfkc: n = s.precomposedStringWithCompatibilityMapping
        case .nfkd: n = s.decomposedStringWithCompatibilityMapping
        }
        text = Array(n.utf8)
    }
}

struct LowercaseNormalizer: Normalizer {
    var canonicalSteps: [String] { ["lowercase"] }
    func normalize(_ text: inout [UInt8]) { text = Array(String(decoding: text, as: UTF8.self).lowercased().utf8) }
}

func replaceAll(_ text: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard let first = pattern.first, text.contains(first) else { return text }
    var out = [UInt8]()
    out.reserveCapacity(text.count + text.count / 4)
    var i = 0
    let n = text.count, m = pattern.count
    while i < n {
        if text[i] == first && i + m <= n && text[i..<(i + m)].elementsEqual(pattern) {
            out.append(contentsOf: content)
            i += m
        } else {
            out.append(text[i])
            i += 1
        }
    }
    return out
}

// MARK: Pre-tokenizers

struct SequencePreTokenizer: PreTokenizer {
    let steps: [any PreTokenizer]
    var rewrites: Bool { steps.contains { $0.rewrites } }
    func rewrite(_ text: inout [UInt8], first: Bool) { for s in steps where s.rewrites { s.rewrite(&text, first: first) } }
    var canonicalSteps: [String] { steps.flatMap(\.canonicalSteps) }
    func split(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ sc: ScalarBuffer, into out: inout [Range<Int>]) {
        var current = [range]
        var nextPieces = [Range<Int>]()
        for s in steps {
            nextPieces.removeAll(keepingCapacity: true)
            for r in current { s.split(b, r, sc, into: &nextPieces) }
            swap(&current, &nextPieces)
        }
        out.append(contentsOf: current)
    }
}

/// `Split` with one of the known regexes (behavior Isolated), and `Digits`.
struct PatternPreTokenizer: PreTokenizer {
    let pattern: SplitPattern
    var rewrites: Bool { false }
    func rewrite(_ text: inout [UInt8], first: Bool) {}
    var canonicalSteps: [String] { ["split \(pattern)"] }
    func split(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ sc: ScalarBuffer, into out: inout [Range<Int>]) {
        pattern.split(b, range.lowerBound, range.upperBound, sc, into: &out)
    }
}

/// `ByteLevel`: the GPT-2 split (when `use_regex`), optionally a leading blank. The byte → scalar mapping itself is
/// done by the model, which starts byte-level words from one symbol per byte.
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool
    var rewrites: Bool { addPrefixSpace }
    func rewrite(_ text: inout [UInt8], first: Bool) {
        if addPrefixSpace && text.first != 0x20 { text.insert(0x20, at: 0) }
    }
    /// Without the prefix blank this is exactly the GPT-2 split (the byte mapping is the model's), so it reads the
    /// same as a GGUF `gpt2` tokenizer's split.
    var canonicalSteps: [String] {
        (addPrefixSpace ? ["bytelevel-prefix-space"] : []) + (useRegex ? ["split \(SplitPattern.gpt2)"] : [])
    }
    func split(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ sc: ScalarBuffer, into out: inout [Range<Int>]) {
        if useRegex { SplitPattern.gpt2.split(b, range.lowerBound, range.upperBound, sc, into: &out) } else {
            if !range.isEmpty { out.append(range) }
        }
    }
}

/// `Metaspace`: blanks become the replacement (`▁`), a prefix is prepended per `prepend_scheme`, and with `split`
/// every replacement starts a new piece.
struct MetaspacePreTokenizer: PreTokenizer {
    enum Scheme: Sendable { case always, first, never }
    let replacement: [UInt8]
    let scheme: Scheme
    let splitWords: Bool
    var rewrites: Bool { true }
    var canonicalSteps: [String] { ["metaspace \(hexBytes(replacement)) \(scheme) split=\(splitWords)"] }
    func rewrite(_ text: inout [UInt8], first: Bool) {
        text = replaceAll(text, [0x20], replacement)
        let prepend = scheme == .always || (scheme == .first && first)
        if prepend && !text.starts(with: replacement) { text.insert(contentsOf: replacement, at: 0) }
    }
    func split(_ b: UnsafePointer<UInt8>, _ range: Range<Int>, _ sc: ScalarBuffer, into out: inout [Range<Int>]) {
        guard splitWords else { if !range.isEmpty { out.append(range) }; return }
        var start = range.lowerBound
        var i = range.lowerBound
        let m = replacement.count
        while i < range.upperBound {
            if i + m <= range.upperBound && (0..<m).allSatisfy({ b[i + $0] == replacement[$0] }) {
                if i > start { out.append(start..<i); start = i }
                i += m
            } else {
                i += 1
            }
        }
        if range.upperBound > start { out.append(start..<range.upperBound) }
    }
}

// MARK: Decoders

struct SequenceDecoder: Decoder {
    let steps: [any Decoder]
    func decodeChain(_ tokens: [String]) -> [String] { steps.reduce(tokens) { $1.decodeChain($0) } }
    var canonicalSteps: [String] { steps.flatMap(\.canonicalSteps) }
}

struct ByteLevelDecoder: Decoder {
    var canonicalSteps: [String] { ["bytelevel"] }
    func decodeChain(_ tokens: [String]) -> [String] {
        var bytes = [UInt8]()
        for t in tokens { ByteLevel.unmapLenient(t, into: &bytes) }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}

struct ReplaceDecoder: Decoder {
    let pattern: String
    let content: String
    var canonicalSteps: [String] { ["replace \(hexBytes(pattern.tokenBytes)) \(hexBytes(content.tokenBytes))"] }
    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { String(decoding: replaceAll(Array($0.utf8), Array(pattern.utf8), Array(content.utf8)), as: UTF8.self) }
    }
}

/// `<0xNN>` tokens back to bytes; a run that is not valid UTF-8 gives one U+FFFD per byte, as `tokenizers` does.
struct ByteFallbackDecoder: Decoder {
    var canonicalSteps: [String] { ["bytefallback"] }
    func decodeChain(_ tokens: [String]) -> [String] {
        var out = [String]()
        var pending = [UInt8]()
        func flush() {
            guard !pending.isEmpty else { return }
            if let s = String(validating: pending, as: UTF8.self) { out.append(s) } else {
                out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for t in tokens {
            let u = Array(t.utf8)
            if u.count == 6 && u[0] == UInt8(ascii: "<") && u[1] == UInt8(ascii: "0") && u[2] == UInt8(ascii: "x")
                && u[5] == UInt8(ascii: ">"), let v = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                pending.append(v)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }
}

struct FuseDecoder: Decoder {
    var canonicalSteps: [String] { ["fuse"] }
    func decodeChain(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// `Strip`: removes up to `start` leading and `stop` trailing copies of `content` from each token.
struct StripDecoder: Decoder {
    let content: Character
    let start: Int
    let stop: Int
    var canonicalSteps: [String] { ["strip \(hexBytes(String(content).tokenBytes)) \(start) \(stop)"] }
    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { t in
            var chars = Array(t)
            var cut = 0
            while cut < start && cut < chars.count && chars[cut] == content { cut += 1 }
            chars.removeFirst(cut)
            var tail = 0
            while tail < stop && tail < chars.count && chars[chars.count - 1 - tail] == content { tail += 1 }
            chars.removeLast(tail)
            return String(chars)
        }
    }
}

struct MetaspaceDecoder: Decoder {
    let replacement: String
    let stripFirst: Bool
    var canonicalSteps: [String] { ["metaspace \(hexBytes(replacement.tokenBytes)) strip-first=\(stripFirst)"] }
    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { i, t in
            // Bytewise: Foundation's search compares composed character sequences, not code points.
            var s = String(decoding: replaceAll(t.tokenBytes, replacement.tokenBytes, [0x20]), as: UTF8.self)
            if i == 0 && stripFirst && s.hasPrefix(" ") { s.removeFirst() }
            return s
        }
    }
}

// MARK: Added tokens

/// One added (special or user) token, matched in the raw text before the model.
struct AddedToken: Sendable {
    let content: [UInt8]
    let id: Int32
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
}

/// Leftmost-longest matching of added tokens (what `tokenizers`' Aho-Corasick does), with a first-byte filter so
/// text without them costs one table lookup per byte.
struct AddedTokenMatcher: Sendable {
    let tokens: [AddedToken]
    private let firstByte: [Bool]
    private let byFirst: [[Int]]  // candidate indices per first byte, longest first

    init(_ tokens: [AddedToken]) {
        let kept = tokens.filter { !$0.content.isEmpty }
        var fb = [Bool](repeating: false, count: 256)
        var bf = [[Int]](repeating: [], count: 256)
        for (i, t) in kept.enumerated() { fb[Int(t.content[0])] = true; bf[Int(t.content[0])].append(i) }
        for k in 0..<256 { bf[k].sort { kept[$0].content.count > kept[$1].content.count } }
        self.tokens = kept
        firstByte = fb
        byFirst = bf
    }

    var isEmpty: Bool { tokens.isEmpty }

    private static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }
    private static func isWordByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c >= 0x80
    }

    /// Calls `text` for each stretch between matches and `token` for each match, in order.
    func forEach(_ b: UnsafeBufferPointer<UInt8>, text: (Range<Int>) -> Void, token: (Int32) -> Void) {
        let n = b.count
        guard !tokens.isEmpty else { if n > 0 { text(0..<n) }; return }
        var segStart = 0
        var i = 0
        firstByte.withUnsafeBufferPointer { fb in
            while i < n {
                if !fb[Int(b[i])] { i += 1; continue }
                var matched: AddedToken?
                for k in byFirst[Int(b[i])] {
                    let t = tokens[k]
                    let m = t.content.count
                    if i + m <= n && t.content.withUnsafeBufferPointer({ memcmp($0.baseAddress!, b.baseAddress! + i, m) }) == 0 {
                        if t.singleWord && ((i > 0 && Self.isWordByte(b[i - 1])) || (i + m < n && Self.isWordByte(b[i + m]))) {
                            continue
                        }
                        matched = t
                        break
                    }
                }
                guard let t = matched else { i += 1; continue }
                var lo = i
                if t.lstrip { while lo > segStart && Self.isBlank(b[lo - 1]) { lo -= 1 } }
                var hi = i + t.content.count
                if t.rstrip { while hi < n && Self.isBlank(b[hi]) { hi += 1 } }
                if lo > segStart { text(segStart..<lo) }
                token(t.id)
                segStart = hi
                i = hi
            }
        }
        if n > segStart { text(segStart..<n) }
    }
}
