import DraftTokenizer
import Foundation
import XCTest

/// Vocabulary entries are keyed by code points, not by Swift `String` equality (canonical equivalence): distinct
/// tokens such as U+03AC and U+1F71 'ά' must keep their own ids, as in `tokenizers` and llama.cpp.
final class VocabularyEntryTests: XCTestCase {
    /// The three Greek pairs that collided: tonos (U+03AC...) and oxia (U+1F71...) spellings, canonically equivalent.
    static let greekPairs: [(String, String)] = [("\u{03AC}", "\u{1F71}"), ("\u{03AE}", "\u{1F75}"), ("\u{03AF}", "\u{1F77}")]

    /// No assets: a SentencePiece-style tokenizer.json holding both spellings of each letter, alone and merged
    /// after "x"; each must keep its own id in the vocabulary, the merge table and the added tokens.
    func testCanonicallyEquivalentTokensKeepTheirIDs() throws {
        var vocab = ["x", "</s>"]
        var merges = [String]()
        for (a, b) in Self.greekPairs { vocab += [a, b, "x" + a, "x" + b]; merges += ["[\"x\", \"\(a)\"]", "[\"x\", \"\(b)\"]"] }
        let added = Self.greekPairs.map { "<\($0.1)>" }
        let entries = (vocab + added).enumerated().map { "\"\($0.element)\": \($0.offset)" }
        let addedJSON = ([(1, "</s>")] + added.enumerated().map { (vocab.count + $0.offset, $0.element) })
            .map { "{\"id\": \($0.0), \"content\": \"\($0.1)\"}" }
        let json = """
        {"added_tokens": [\(addedJSON.joined(separator: ", "))], "normalizer": null, "pre_tokenizer": null,
         "decoder": null, "post_processor": null,
         "model": {"type": "BPE", "vocab": {\(entries.joined(separator: ", "))}, "merges": [\(merges.joined(separator: ", "))]}}
        """
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-greek-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(json.utf8).write(to: url)
        let tok = try loadTokenizer(url.path)
        XCTAssertEqual(tok.vocabSize, vocab.count + added.count)
        for (k, (a, b)) in Self.greekPairs.enumerated() {
            let base = Int32(2 + 4 * k)
            XCTAssertEqual(tok.encode(a), [base], "U+\(String(a.unicodeScalars.first!.value, radix: 16))")
            XCTAssertEqual(tok.encode(b), [base + 1], "U+\(String(b.unicodeScalars.first!.value, radix: 16))")
            XCTAssertEqual(tok.encode("x" + a), [base + 2])
            XCTAssertEqual(tok.encode("x" + b), [base + 3])
            XCTAssertEqual(tok.encode("<\(b)>"), [Int32(vocab.count + k)], "added token by its own code points")
            // The tonos spelling is not the added oxia token: '<' and '>' have no ids (no unknown token), the letter has.
            XCTAssertEqual(tok.encode("<\(a)>"), [base])
            XCTAssertEqual(Array(tok.decode([base + 3]).utf8), Array(("x" + b).utf8))
        }
    }

    /// The Phi-3 vocabulary has all six as single-scalar tokens; GGUF and tokenizer.json must give each its own id,
    /// and `x` + the letter must encode as [id of ▁x, id of the letter], as `tokenizers` does.
    func testGreekPairsInPhi3() throws {
        for path in ["vocab/ggml-vocab-phi-3.gguf", "tokenizers/phi-3/tokenizer.json", "vocab/ggml-vocab-llama-spm.gguf",
                     "tokenizers/llama-spm/tokenizer.json"] {
            let tok = try loadTokenizer(try Assets.require(path).path) as! BPETokenizer
            let x = try XCTUnwrap(tok.id(for: "\u{2581}x"), path)  // the text's start gets SentencePiece's ▁
            for (a, b) in Self.greekPairs {
                let ia = try XCTUnwrap(tok.id(for: a), path), ib = try XCTUnwrap(tok.id(for: b), path)
                XCTAssertNotEqual(ia, ib, "\(path): \(a.debugDescription) and its oxia twin share id \(ia)")
                XCTAssertEqual(Array(tok.token(for: ib)!.utf8), Array(b.utf8), path)
                XCTAssertEqual(tok.encode("x" + a), [x, ia], path)
                XCTAssertEqual(tok.encode("x" + b), [x, ib], path)
                XCTAssertEqual(Array(tok.decode([x, ib]).utf8), Array(("x" + b).utf8), path)
            }
        }
    }

    /// Every vocabulary entry whose decoded text `tokenizers` encodes to exactly its own id (listed live by
    /// scripts/reference/single_token_entries.py) gets that same id from SwiftDraft, through the tokenizer.json and
    /// through the GGUF of the same vocabulary.
    func check(json: String, gguf: String, minimum: Int) throws {
        let jsonURL = try Assets.require(json)
        let ggufURL = try Assets.require(gguf)
        try Assets.requireTokenizers()
        let script = Assets.repo.appendingPathComponent("scripts/reference/single_token_entries.py").path
        let out = try XCTUnwrap(Assets.run([Assets.python, script, jsonURL.path]), "\(script) failed")
        var cases = [(Int32, String)]()
        for line in out.split(separator: "\n") {
            let f = line.split(separator: "\t")
            guard f.count == 2, let id = Int32(f[0]), let bytes = hexDecode(f[1]) else { XCTFail("bad line \(line)"); continue }
            cases.append((id, String(decoding: bytes, as: UTF8.self)))
        }
        XCTAssertGreaterThanOrEqual(cases.count, minimum, json)
        for url in [jsonURL, ggufURL] {
            let tok = try loadTokenizer(url.path)
            var bad = [String]()
            for (id, text) in cases {
                let got = tok.encode(text)
                if got != [id] { bad.append("\(id) \(text.debugDescription) -> \(got)") }
            }
            XCTAssertTrue(bad.isEmpty, "\(url.lastPathComponent): \(bad.count) of \(cases.count) entries differ: \(bad.prefix(8))")
        }
    }

    func hexDecode(_ s: Substring) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        return stride(from: 0, to: u.count, by: 2).compactMap { UInt8(String(decoding: u[$0..<($0 + 2)], as: UTF8.self), radix: 16) }
    }

    func testPhi3Entries() throws {
        try check(json: "tokenizers/phi-3/tokenizer.json", gguf: "vocab/ggml-vocab-phi-3.gguf", minimum: 16_000)
    }

    func testLlamaSPMEntries() throws {
        try check(json: "tokenizers/llama-spm/tokenizer.json", gguf: "vocab/ggml-vocab-llama-spm.gguf", minimum: 16_000)
    }

    func testSmolLM2Entries() throws {
        try check(json: "tokenizers/smollm2/tokenizer.json", gguf: FingerprintTests.smolGGUF, minimum: 48_000)
    }
}
