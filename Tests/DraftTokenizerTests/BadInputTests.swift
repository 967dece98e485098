import DraftTokenizer
import Foundation
import XCTest

/// Unusable tokenizer files give a TokenizerError naming the file and what was expected, never a trap.
final class BadInputTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-tok-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ data: Data) throws -> String {
        let u = dir.appendingPathComponent(name)
        try data.write(to: u)
        return u.path
    }

    /// Loading must fail with one line naming the file and containing `expected`.
    func assertRejected(_ path: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try loadTokenizer(path)
            XCTFail("\(path) loaded", file: file, line: line)
        } catch let e as TokenizerError {
            XCTAssertTrue(e.message.hasPrefix(path), "message does not name the file: \(e.message)", file: file, line: line)
            XCTAssertTrue(e.message.contains(expected), "'\(e.message)' lacks '\(expected)'", file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), "more than one line: \(e.message)", file: file, line: line)
        } catch {
            XCTFail("not a TokenizerError: \(error)", file: file, line: line)
        }
    }

    static let tiny = """
    {"version": "1.0", "added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": true}],
     "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
     "post_processor": null, "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "<|endoftext|>": 5},
               "merges": ["a b", "Ġ ab"]}}
    """

    func tinyWith(_ edit: (inout String) -> Void) -> Data {
        var s = Self.tiny
        edit(&s)
        return Data(s.utf8)
    }

    func testTinyTokenizerWorks() throws {
        let tok = try loadTokenizer(try write("tokenizer.json", Data(Self.tiny.utf8)))
        XCTAssertEqual(tok.encode("ab ab<|endoftext|>"), [2, 4, 5])
        XCTAssertEqual(tok.decode([2, 4, 5]), "ab ab<|endoftext|>")
        XCTAssertEqual(tok.eosTokenID, 5)
        XCTAssertEqual(tok.vocabSize, 6)
        // Content, not file bytes: the whole-file hash older shards recorded is only recognised.
        XCTAssertNotEqual(tok.fingerprint, Assets.sha256(Data(Self.tiny.utf8)))
        XCTAssertTrue(tok.recognizes(fingerprint: Assets.sha256(Data(Self.tiny.utf8))))
    }

    func testMalformedJSON() throws {
        assertRejected(try write("tokenizer.json", Data(Self.tiny.dropLast(3).utf8)), "malformed JSON at byte")
        assertRejected(try write("t2.json", Data("[1, 2".utf8)), "malformed JSON")
        assertRejected(try write("t3.json", Data("".utf8)), "malformed JSON at byte 0")
        assertRejected(try write("t4.json", Data("[]".utf8)), "expected a JSON object")
    }

    func testMissingOrWrongParts() throws {
        assertRejected(try write("a.json", Data(#"{"model": {"type": "BPE"}}"#.utf8)), "model.vocab")
        assertRejected(try write("b.json", Data(#"{"model": {"type": "WordPiece", "vocab": {}}}"#.utf8)),
                       "unsupported model type 'WordPiece'")
        assertRejected(try write("c.json", tinyWith { $0 = $0.replacingOccurrences(of: "\"a b\"", with: "\"a c\"") }),
                       "missing from model.vocab")
        assertRejected(try write("d.json", tinyWith { $0 = $0.replacingOccurrences(of: "\"a b\"", with: "\"ab\"") }),
                       "model.merges[0]")
    }

    func testUnknownComponentTypes() throws {
        assertRejected(try write("n.json", tinyWith {
            $0 = $0.replacingOccurrences(of: "\"normalizer\": null", with: "\"normalizer\": {\"type\": \"BertNormalizer\"}")
        }), "unsupported normalizer type 'BertNormalizer'")
        assertRejected(try write("p.json", tinyWith {
            $0 = $0.replacingOccurrences(of: "{\"type\": \"ByteLevel\", \"add_prefix_space\"", with: "{\"type\": \"Whitespace\", \"x\"")
        }), "unsupported pre_tokenizer type 'Whitespace'")
        assertRejected(try write("s.json", tinyWith {
            $0 = $0.replacingOccurrences(of: "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
                                         with: "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}")
        }), "unsupported pre_tokenizer Split regex")
        assertRejected(try write("d.json", tinyWith {
            $0 = $0.replacingOccurrences(of: "\"decoder\": {\"type\": \"ByteLevel\"}", with: "\"decoder\": {\"type\": \"WordPiece\"}")
        }), "unsupported decoder type 'WordPiece'")
        assertRejected(try write("q.json", tinyWith {
            $0 = $0.replacingOccurrences(of: "\"post_processor\": null", with: "\"post_processor\": {\"type\": \"Magic\"}")
        }), "unsupported post_processor type 'Magic'")
    }

    func testMissingFile() {
        assertRejected(dir.appendingPathComponent("nope.json").path, "cannot read")
        assertRejected(dir.appendingPathComponent("nope.gguf").path, "cannot read")
    }

    /// A small GGUF v3 with a gpt2 tokenizer, written by hand.
    static func tinyGGUF(model: String = "gpt2") -> Data {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        d.append(contentsOf: Array("GGUF".utf8))
        u32(3); u64(0); u64(6)
        str("general.architecture"); u32(8); str("llama")
        str("tokenizer.ggml.model"); u32(8); str(model)
        str("tokenizer.ggml.pre"); u32(8); str("gpt-2")
        let tokens = ["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>"]
        str("tokenizer.ggml.tokens"); u32(9); u32(8); u64(UInt64(tokens.count)); tokens.forEach(str)
        str("tokenizer.ggml.merges"); u32(9); u32(8); u64(2); str("a b"); str("Ġ ab")
        str("tokenizer.ggml.eos_token_id"); u32(4); u32(5)
        return d
    }

    func testTinyGGUFWorks() throws {
        let tok = try loadTokenizer(try write("tiny.gguf", Self.tinyGGUF()))
        XCTAssertEqual(tok.encode("ab ab"), [2, 4])
        XCTAssertEqual(tok.decode([2, 4]), "ab ab")
        XCTAssertEqual(tok.eosTokenID, 5)
    }

    func testTruncatedGGUF() throws {
        let full = Self.tinyGGUF()
        // Every proper prefix must be refused with a message, whatever field it cuts.
        for n in stride(from: 0, to: full.count, by: 7) {
            let p = try write("cut\(n).gguf", full.prefix(n))
            assertRejected(p, n < 4 ? "not a GGUF file" : "truncated GGUF at byte")
        }
    }

    /// Corrupted bytes anywhere (lengths, types, counts) load or fail cleanly; a trap would kill the test run.
    func testCorruptedFilesNeverTrap() throws {
        var rng = SystemRandomNumberGenerator()
        let gguf = Self.tinyGGUF()
        let json = Data(Self.tiny.utf8)
        for k in 0..<300 {
            var g = gguf
            for _ in 0..<(1 + k % 4) { g[Int.random(in: 0..<g.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            let gp = try write("fuzz.gguf", g)
            do { _ = try loadTokenizer(gp).encode("ab ab") } catch let e as TokenizerError {
                XCTAssertTrue(e.message.hasPrefix(gp), e.message)
            }
            var j = json
            j[Int.random(in: 0..<j.count, using: &rng)] = UInt8.random(in: 0x20...0x7E, using: &rng)
            let jp = try write("fuzz.json", j)
            do { _ = try loadTokenizer(jp).encode("ab ab") } catch let e as TokenizerError {
                XCTAssertTrue(e.message.hasPrefix(jp), e.message)
            }
        }
        for n in 0..<json.count { assertRejected(try write("cut.json", json.prefix(n)), "malformed JSON at byte") }
    }

    func testBadGGUFHeaderAndKeys() throws {
        var wrongMagic = Self.tinyGGUF()
        wrongMagic[0] = UInt8(ascii: "X")
        assertRejected(try write("m.gguf", wrongMagic), "expected the magic 'GGUF'")
        var v9 = Self.tinyGGUF()
        v9[4] = 9
        assertRejected(try write("v.gguf", v9), "GGUF version 9 (expected 2 or 3)")
        assertRejected(try write("u.gguf", Self.tinyGGUF(model: "bert")), "unsupported tokenizer.ggml.model 'bert'")
    }
}
