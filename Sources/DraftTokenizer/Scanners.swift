import Foundation

// The pre-tokenizer regexes of GPT-2, Llama-3 and Qwen2, as hand-written scanners over Unicode scalars.
//
// Each scanner follows its regex alternative by alternative (first alternative that matches wins, each quantifier
// greedy with the backtracking the regex would do), so the pieces are exactly those of Rust's `regex` crate in
// Hugging Face `tokenizers`. They run over a per-scalar class array, built once per segment, so the hot loop does no
// Unicode property lookups and no String work.

/// Scalar classes; everything the three regexes distinguish.
enum ScalarClass {
    static let letter: UInt8 = 0      // \p{L}
    static let number: UInt8 = 1      // \p{N}
    static let space: UInt8 = 2       // \s other than ' ', \r, \n
    static let blank: UInt8 = 3       // ' '
    static let newline: UInt8 = 4     // \r or \n
    static let apostrophe: UInt8 = 5  // '
    static let other: UInt8 = 6       // anything else: [^\s\p{L}\p{N}]

    @inline(__always) static func isWhitespace(_ c: UInt8) -> Bool { c >= 2 && c <= 4 }
    @inline(__always) static func isOther(_ c: UInt8) -> Bool { c >= 5 }

    static func classify(_ s: Unicode.Scalar) -> UInt8 {
        if s.value < 0x80 { return ascii[Int(s.value)] }
        let p = s.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return p.isWhitespace ? space : other
        }
    }

    static let ascii: [UInt8] = (0..<128).map { v -> UInt8 in
        let s = Unicode.Scalar(UInt8(v))
        switch s {
        case " ": return blank
        case "\r", "\n": return newline
        case "'": return apostrophe
        case "a"..."z", "A"..."Z": return letter
        case "0"..."9": return number
        case "\t", "\u{0B}", "\u{0C}": return space
        default: return other
        }
    }

    /// Classes of the Basic Multilingual Plane, computed once: property lookups are too slow for the hot loop.
    static let bmp: [UInt8] = (0..<0x10000).map { v -> UInt8 in
        guard let s = Unicode.Scalar(UInt32(v)) else { return other }
        return classify(s)
    }
}

/// Per-segment scratch: the class and starting byte offset of every scalar (plus one end offset).
final class ScalarBuffer {
    var cls: UnsafeMutablePointer<UInt8>
    var off: UnsafeMutablePointer<Int32>
    var capacity: Int
    var count = 0

    init(capacity: Int = 4096) {
        self.capacity = capacity
        cls = .allocate(capacity: capacity)
        off = .allocate(capacity: capacity + 1)
    }

    deinit { cls.deallocate(); off.deallocate() }

    /// Decodes `b[start..<end]` (valid UTF-8) into classes and offsets (relative to `b`).
    func load(_ b: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        let n = end - start
        if n > capacity {
            cls.deallocate(); off.deallocate()
            capacity = n
            cls = .allocate(capacity: n)
            off = .allocate(capacity: n + 1)
        }
        ScalarClass.bmp.withUnsafeBufferPointer { bmp in
            ScalarClass.ascii.withUnsafeBufferPointer { ascii in
                var i = start, k = 0
                while i < end {
                    let c0 = b[i]
                    off[k] = Int32(i)
                    if c0 < 0x80 {
                        cls[k] = ascii[Int(c0)]
                        i += 1
                    } else if c0 < 0xE0 {
                        let v = (UInt32(c0 & 0x1F) << 6) | UInt32(b[i + 1] & 0x3F)
                        cls[k] = bmp[Int(v)]
                        i += 2
                    } else if c0 < 0xF0 {
                        let v = (UInt32(c0 & 0x0F) << 12) | (UInt32(b[i + 1] & 0x3F) << 6) | UInt32(b[i + 2] & 0x3F)
                        cls[k] = bmp[Int(v)]
                        i += 3
                    } else {
                        let v = (UInt32(c0 & 0x07) << 18) | (UInt32(b[i + 1] & 0x3F) << 12)
                            | (UInt32(b[i + 2] & 0x3F) << 6) | UInt32(b[i + 3] & 0x3F)
                        cls[k] = Unicode.Scalar(v).map(ScalarClass.classify) ?? ScalarClass.other
                        i += 4
                    }
                    k += 1
                }
                off[k] = Int32(end)
                count = k
            }
        }
    }
}

/// Which split regex a scanner implements.
enum SplitPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Llama-3's pattern with `\p{N}` (one digit per piece) in place of `\p{N}{1,3}`.
    case qwen2
    /// Every `\p{N}` scalar alone, runs of everything else kept together (HF `Digits` with individual digits).
    case digitsIndividual
    /// Runs of `\p{N}` and runs of everything else (HF `Digits`).
    case digits
    /// Before every U+2581 `▁` that follows a non-`▁` scalar. Used where no token has `▁` after its first run of
    /// them, so no merge can cross the cut and the result equals the unsplit text's.
    case metaspaceWords

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The scanner for a regex string of a tokenizer.json `Split`, when it is one of the known ones.
    static func forRegex(_ pattern: String) -> SplitPattern? {
        switch pattern {
        case gpt2Regex, #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#: return .gpt2
        case llama3Regex: return .llama3
        case qwen2Regex: return .qwen2
        case #"\p{N}"#: return .digitsIndividual
        default: return nil
        }
    }
}

/// Length in scalars of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at scalar `i`, or 0.
@inline(__always)
private func contraction(_ b: UnsafePointer<UInt8>, _ off: UnsafeMutablePointer<Int32>, _ i: Int, _ m: Int,
                         caseInsensitive: Bool) -> Int {
    guard i + 1 < m else { return 0 }
    var c1 = b[Int(off[i + 1])]
    if caseInsensitive {
        if c1 >= 0x41 && c1 <= 0x5A { c1 |= 0x20 }
        // Rust's (?i) folds U+017F LATIN SMALL LETTER LONG S to 's'.
        if c1 == 0xC5 && b[Int(off[i + 1]) + 1] == 0xBF { return 2 }
    }
    switch c1 {
    case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return 2
    case UInt8(ascii: "r"), UInt8(ascii: "v"), UInt8(ascii: "l"):
        guard i + 2 < m else { return 0 }
        var c2 = b[Int(off[i + 2])]
        if caseInsensitive && c2 >= 0x41 && c2 <= 0x5A { c2 |= 0x20 }
        let want: UInt8 = c1 == UInt8(ascii: "l") ? UInt8(ascii: "l") : UInt8(ascii: "e")
        return c2 == want ? 3 : 0
    default: return 0
    }
}

extension SplitPattern {
    /// Splits `b[start..<end]` and appends the pieces' byte ranges.
    func split(_ b: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ sc: ScalarBuffer, into out: inout [Range<Int>]) {
        if start >= end { return }
        if self == .metaspaceWords { splitMetaspace(b, start, end, into: &out); return }
        sc.load(b, start, end)
        let m = sc.count
        let cls = sc.cls, off = sc.off
        var i = 0
        switch self {
        case .gpt2:
            while i < m {
                let c = cls[i]
                var j = i + 1
                if c == ScalarClass.apostrophe, case let k = contraction(b, off, i, m, caseInsensitive: false), k > 0 {
                    j = i + k
                } else if c == ScalarClass.blank && j < m && !ScalarClass.isWhitespace(cls[j]) {
                    let d = cls[j]
                    j += 1
                    if d == ScalarClass.letter || d == ScalarClass.number {
                        while j < m && cls[j] == d { j += 1 }
                    } else {
                        while j < m && ScalarClass.isOther(cls[j]) { j += 1 }
                    }
                } else if c == ScalarClass.letter || c == ScalarClass.number {
                    while j < m && cls[j] == c { j += 1 }
                } else if ScalarClass.isOther(c) {
                    while j < m && ScalarClass.isOther(cls[j]) { j += 1 }
                } else {
                    while j < m && ScalarClass.isWhitespace(cls[j]) { j += 1 }
                    // \s+(?!\S) leaves the last blank to the word after it; a lone one falls to \s+.
                    if j < m && j - i >= 2 { j -= 1 }
                }
                out.append(Int(off[i])..<Int(off[j]))
                i = j
            }
        case .llama3, .qwen2:
            let maxDigits = self == .llama3 ? 3 : 1
            while i < m {
                let c = cls[i]
                var j = i + 1
                if c == ScalarClass.apostrophe, case let k = contraction(b, off, i, m, caseInsensitive: true), k > 0 {
                    j = i + k
                } else if c == ScalarClass.letter {
                    while j < m && cls[j] == ScalarClass.letter { j += 1 }
                } else if c != ScalarClass.newline && c != ScalarClass.number && j < m && cls[j] == ScalarClass.letter {
                    // [^\r\n\p{L}\p{N}]?\p{L}+
                    j += 1
                    while j < m && cls[j] == ScalarClass.letter { j += 1 }
                } else if c == ScalarClass.number {
                    while j < m && j - i < maxDigits && cls[j] == ScalarClass.number { j += 1 }
                } else if ScalarClass.isOther(c) || (c == ScalarClass.blank && j < m && ScalarClass.isOther(cls[j])) {
                    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
                    while j < m && ScalarClass.isOther(cls[j]) { j += 1 }
                    while j < m && cls[j] == ScalarClass.newline { j += 1 }
                } else {
                    var e = j
                    var lastNewline = c == ScalarClass.newline ? i : -1
                    while e < m && ScalarClass.isWhitespace(cls[e]) {
                        if cls[e] == ScalarClass.newline { lastNewline = e }
                        e += 1
                    }
                    if lastNewline >= 0 {
                        j = lastNewline + 1  // \s*[\r\n]+ backtracks to just after the run's last newline
                    } else if e < m && e - i >= 2 {
                        j = e - 1
                    } else {
                        j = e
                    }
                }
                out.append(Int(off[i])..<Int(off[j]))
                i = j
            }
        case .digitsIndividual, .digits:
            let individual = self == .digitsIndividual
            while i < m {
                let isNum = cls[i] == ScalarClass.number
                var j = i + 1
                if !isNum || !individual {
                    while j < m && (cls[j] == ScalarClass.number) == isNum { j += 1 }
                }
                out.append(Int(off[i])..<Int(off[j]))
                i = j
            }
        case .metaspaceWords:
            break
        }
    }

    private func splitMetaspace(_ b: UnsafePointer<UInt8>, _ start: Int, _ end: Int, into out: inout [Range<Int>]) {
        var pieceStart = start
        var i = start
        var prevIsMeta = true
        while i < end {
            // U+2581 is E2 96 81 in UTF-8.
            if b[i] == 0xE2 && i + 2 < end && b[i + 1] == 0x96 && b[i + 2] == 0x81 {
                if !prevIsMeta && i > pieceStart { out.append(pieceStart..<i); pieceStart = i }
                prevIsMeta = true
                i += 3
            } else {
                prevIsMeta = false
                i += 1
            }
        }
        if end > pieceStart { out.append(pieceStart..<end) }
    }
}
