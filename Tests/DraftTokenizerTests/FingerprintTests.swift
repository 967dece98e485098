import DraftTokenizer
import Foundation
import XCTest

/// The fingerprint is the tokenizer's content: the same for a GGUF, its conversion to other tensor types and the
/// tokenizer.json of the same tokenizer; different for a different tokenizer; never the hash of a whole model file.
final class FingerprintTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-fp-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func fingerprint(_ relative: String) throws -> String {
        try loadTokenizer(try Assets.require(relative).path).fingerprint
    }

    static let smolGGUF = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

    func testSmolLM2GGUFAndTokenizerJSONAgree() throws {
        XCTAssertEqual(try fingerprint(Self.smolGGUF), try fingerprint("tokenizers/smollm2/tokenizer.json"))
    }

    func testDifferentTokenizersDiffer() throws {
        let all = try [Self.smolGGUF, "vocab/ggml-vocab-phi-3.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                       "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-qwen2.gguf"]
            .map(fingerprint)
        XCTAssertEqual(Set(all).count, all.count, "\(all)")
        XCTAssertNotEqual(try fingerprint("tokenizers/phi-3/tokenizer.json"), try fingerprint("tokenizers/smollm2/tokenizer.json"))
    }

    /// Phi-3's GGUF ranks SentencePiece merges by token score (equal scores tie, leftmost first, as llama.cpp does);
    /// its tokenizer.json lists merges in one strict order (ties broken by piece length, as transformers' converter
    /// writes them). The merge tables differ, so the fingerprints do; everything else about them is equal, which this
    /// shows by comparing the two pipelines' other parts through the byte-for-byte identical vocabulary and ids.
    func testPhi3GGUFAndTokenizerJSONDifferOnlyInMergeTies() throws {
        let gguf = try loadTokenizer(try Assets.require("vocab/ggml-vocab-phi-3.gguf").path) as! BPETokenizer
        let json = try loadTokenizer(try Assets.require("tokenizers/phi-3/tokenizer.json").path) as! BPETokenizer
        XCTAssertNotEqual(gguf.fingerprint, json.fingerprint)
        XCTAssertEqual(gguf.vocabSize, json.vocabSize)
        XCTAssertEqual(gguf.eosTokenID, json.eosTokenID)
        XCTAssertEqual(gguf.bosTokenID, json.bosTokenID)
        for id in 0..<Int32(gguf.vocabSize) {
            XCTAssertEqual(gguf.token(for: id).map { Array($0.utf8) }, json.token(for: id).map { Array($0.utf8) }, "id \(id)")
        }
    }

    /// The same GGUF converted from Q4_1/Q8_0 to F16 by the `gguf` package (scripts/reference/rewrite_gguf.py): every
    /// tensor byte differs, the tokenizer does not.
    func testConversionToOtherTensorTypesKeepsFingerprint() throws {
        let src = try Assets.require(Self.smolGGUF)
        try Assets.requirePython("gguf", "numpy")
        let out = dir.appendingPathComponent("smollm2-f16.gguf")
        let script = Assets.repo.appendingPathComponent("scripts/reference/rewrite_gguf.py").path
        XCTAssertNotNil(Assets.run([Assets.python, script, src.path, out.path, "f16"]), "\(script) failed")
        let size = { (u: URL) in (try FileManager.default.attributesOfItem(atPath: u.path)[.size] as? Int) ?? 0 }
        XCTAssertGreaterThan(try size(out), 2 * (try size(src)), "F16 is over twice the Q4_1 file")
        let original = try loadTokenizer(src.path), converted = try loadTokenizer(out.path)
        XCTAssertEqual(converted.fingerprint, original.fingerprint)
    }

    /// A GGUF with 4 GiB of (sparse) tensor data after its metadata loads as fast as without it, with the same
    /// fingerprint: loading reads the metadata only. Hashing 4 GiB would take tens of seconds here.
    func testLoadingDoesNotHashTheWholeFile() throws {
        let small = dir.appendingPathComponent("tiny.gguf")
        try BadInputTests.tinyGGUF().write(to: small)
        let big = dir.appendingPathComponent("tiny-with-tensors.gguf")
        try BadInputTests.tinyGGUF().write(to: big)
        let h = try FileHandle(forWritingTo: big)
        try h.truncate(atOffset: 4 << 30)
        try h.close()
        let t0 = Date()
        let tok = try loadTokenizer(big.path)
        let seconds = Date().timeIntervalSince(t0)
        XCTAssertLessThan(seconds, 3, "loading took \(seconds) s")
        XCTAssertEqual(tok.fingerprint, try loadTokenizer(small.path).fingerprint)
    }

    /// Formatting and key order of a tokenizer.json do not count; what the tokenizer does does.
    func testTokenizerJSONContentNotBytes() throws {
        func fp(_ text: String, _ name: String) throws -> String {
            let u = dir.appendingPathComponent(name)
            try Data(text.utf8).write(to: u)
            return try loadTokenizer(u.path).fingerprint
        }
        let base = try fp(BadInputTests.tiny, "base.json")
        let reformatted = BadInputTests.tiny.replacingOccurrences(of: ", ", with: ",\n    ")
            .replacingOccurrences(of: "\"version\": \"1.0\", ", with: "")
        XCTAssertEqual(try fp(reformatted, "reformatted.json"), base)
        let variants = [
            BadInputTests.tiny.replacingOccurrences(of: "[\"a b\", \"Ġ ab\"]", with: "[\"a b\"]"),  // a merge less
            BadInputTests.tiny.replacingOccurrences(of: "\"special\": true}", with: "\"special\": true, \"lstrip\": true}"),
            BadInputTests.tiny.replacingOccurrences(of: "\"normalizer\": null", with: "\"normalizer\": {\"type\": \"NFC\"}"),
            BadInputTests.tiny.replacingOccurrences(of: "\"decoder\": {\"type\": \"ByteLevel\"}", with: "\"decoder\": null"),
            BadInputTests.tiny.replacingOccurrences(of: "\"use_regex\": true", with: "\"use_regex\": false"),
        ]
        var seen: Set = [base]
        for (k, v) in variants.enumerated() {
            XCTAssertNotEqual(v, BadInputTests.tiny, "variant \(k) edits nothing")
            XCTAssertTrue(seen.insert(try fp(v, "v\(k).json")).inserted, "variant \(k) has an earlier fingerprint")
        }
    }

    /// Shards and checkpoints written before content fingerprints hold the file's SHA-256: still recognised.
    func testLegacyFileHashIsRecognised() throws {
        let url = try Assets.require("vocab/ggml-vocab-gpt-2.gguf")
        let tok = try loadTokenizer(url.path)
        let fileHash = Assets.sha256(try Data(contentsOf: url))
        XCTAssertNotEqual(tok.fingerprint, fileHash)
        XCTAssertTrue(tok.recognizes(fingerprint: fileHash))
        XCTAssertTrue(tok.recognizes(fingerprint: tok.fingerprint))
        XCTAssertFalse(tok.recognizes(fingerprint: String(repeating: "0", count: 64)))
        XCTAssertFalse(tok.recognizes(fingerprint: try fingerprint("tokenizers/smollm2/tokenizer.json")))
        XCTAssertFalse(ByteTokenizer().recognizes(fingerprint: fileHash))
    }
}
