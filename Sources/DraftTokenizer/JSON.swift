import Foundation

/// A parsed JSON value. Hand-written rather than JSONSerialization because a Llama-3 tokenizer.json holds 128K vocab
/// entries and 280K merges, which corelibs-foundation bridges through NSDictionary/NSString slowly, and because a
/// malformed file must give a message with the byte offset.
///
/// Object members keep their file order and are compared by UTF-8 bytes: a vocabulary may hold two keys that are
/// canonically equivalent Unicode (U+03AC and U+1F71 'ά'), which a `[String: JSON]` would fold into one, since Swift
/// `String` equality is canonical equivalence.
enum JSON {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(key: String, value: JSON)])

    /// The member named `key` byte for byte (the last one if repeated, as a dictionary would keep); nil otherwise.
    /// A linear scan: the objects looked up by key are pipeline stages with a handful of members.
    subscript(key: String) -> JSON? {
        guard case .object(let o) = self else { return nil }
        for member in o.reversed() where member.key.utf8.elementsEqual(key.utf8) { return member.value }
        return nil
    }

    var string: String? { if case .string(let s) = self { return s }; return nil }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var double: Double? { if case .number(let d) = self { return d }; return nil }
    var int: Int? {
        if case .number(let d) = self, d == d.rounded(), abs(d) < 9.0e15 { return Int(d) }
        return nil
    }
    var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    var object: [(key: String, value: JSON)]? { if case .object(let o) = self { return o }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }

    /// Parses a whole document; the error carries the byte offset and what was expected there.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> JSON {
        var p = JSONParser(b: bytes)
        p.skipWS()
        let v = try p.value(depth: 0)
        p.skipWS()
        if p.i != bytes.count { throw p.fail("end of document") }
        return v
    }
}

struct JSONParseError: Error {
    let offset: Int
    let expected: String
}

private struct JSONParser {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0

    func fail(_ expected: String) -> JSONParseError { JSONParseError(offset: i, expected: expected) }

    mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < 512 else { throw fail("nesting shallower than 512 levels") }
        guard i < b.count else { throw fail("a value") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var o = [(key: String, value: JSON)]()
            skipWS()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skipWS()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("a string key") }
                let k = try string()
                skipWS()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("':'") }
                i += 1
                skipWS()
                o.append((key: k, value: try value(depth: depth + 1)))
                skipWS()
                guard i < b.count else { throw fail("',' or '}'") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                throw fail("',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var a = [JSON]()
            skipWS()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            while true {
                skipWS()
                a.append(try value(depth: depth + 1))
                skipWS()
                guard i < b.count else { throw fail("',' or ']'") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                throw fail("',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return .number(try number())
        }
    }

    mutating func literal(_ s: StaticString) throws {
        let n = s.utf8CodeUnitCount
        guard i + n <= b.count else { throw fail("'\(s)'") }
        for k in 0..<n where b[i + k] != s.utf8Start[k] { throw fail("'\(s)'") }
        i += n
    }

    mutating func number() throws -> Double {
        let start = i
        while i < b.count {
            let c = b[i]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { i += 1 } else { break }
        }
        guard i > start, let d = Double(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
        else { i = start; throw fail("a value") }
        return d
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw fail("4 hex digits after \\u") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("a hex digit")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: most strings have no escapes and can be decoded straight from the buffer.
        while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "\\") { i += 1 }
        guard i < b.count else { throw fail("a closing '\"'") }
        if b[i] == UInt8(ascii: "\"") {
            let s = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            i += 1
            return s
        }
        var out = Array(UnsafeBufferPointer(rebasing: b[start..<i]))
        while true {
            guard i < b.count else { throw fail("a closing '\"'") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw fail("an escape") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00, i + 6 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    let lo = try hex4()
                    if lo >= 0xDC00 && lo < 0xE000 { v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00) } else { i = save }
                }
                // A lone surrogate cannot be UTF-8; Rust's serde rejects it too, so the replacement is moot in
                // practice and keeps the parser total.
                let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: i -= 1; throw fail("a valid escape")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
