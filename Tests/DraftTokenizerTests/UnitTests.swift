import DraftTokenizer
import Foundation
import XCTest

/// Pieces that need no cached assets: SHA-256 against FIPS vectors, loading by spec, batch encoding.
final class UnitTests: XCTestCase {
    func hex(_ s: String) -> String { Array(s.utf8).withUnsafeBytes { SHA256.hex($0) } }

    func testSHA256KnownAnswers() {
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(String(repeating: "a", count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Streaming in odd pieces gives the same digest as one call.
        let msg = Array((0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        var s = SHA256()
        var i = 0
        for step in [1, 63, 64, 65, 3, 200, 604] { s.update(msg[i..<(i + step)]); i += step }
        XCTAssertEqual(SHA256.hexString(s.finalize()), msg.withUnsafeBytes { SHA256.hex($0) })
    }

    func testSpecs() throws {
        XCTAssertEqual(try loadTokenizer("bytes").fingerprint, "swiftdraft-bytes-v1")
        XCTAssertThrowsError(try loadTokenizer("model.bin")) { e in
            XCTAssertTrue((e as? TokenizerError)?.message.hasPrefix("model.bin:") ?? false)
        }
    }

    func testEncodeBatchEqualsEncode() throws {
        let tok = try loadTokenizer(try Assets.require("tokenizers/smollm2/tokenizer.json").path)
        let texts = (0..<64).map { "def f\($0)(x):\n    return x * \($0)  # ünïcödé 🦙\n" } + ["", " ", "<|endoftext|>"]
        XCTAssertEqual(tok.encodeBatch(texts), texts.map { tok.encode($0) })
        XCTAssertEqual(tok.encode("<|endoftext|>"), [0])  // added tokens are matched in the text, as tokenizers does
    }

    /// SmolLM2 has no symbol for 21 bytes (0x04, 0x06, 0xC0, ...): `tokenizers` (no unk_token) and llama.cpp drop
    /// them; the GGUF path must not emit tokenizer.ggml.unknown_token_id (0, `<|endoftext|>`) for them.
    func testBytesWithoutSymbolAreDropped() throws {
        let json = try loadTokenizer(try Assets.require("tokenizers/smollm2/tokenizer.json").path)
        let gguf = try loadTokenizer(try Assets.require("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path)
        let text = "a\u{4}b\u{6}\u{14}c"
        try Assets.requireTokenizers()
        let live = try XCTUnwrap(Assets.run([Assets.python, "-c", """
            import sys
            from tokenizers import Tokenizer
            print(*Tokenizer.from_file(sys.argv[1]).encode(sys.argv[2], add_special_tokens=False).ids)
            """, try Assets.require("tokenizers/smollm2/tokenizer.json").path, text]))
        let want = live.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertFalse(want.contains(0))
        XCTAssertEqual(json.encode(text), want)
        XCTAssertEqual(gguf.encode(text), want)
    }

    func testGPT2VocabularyFacts() throws {
        let tok = try loadTokenizer(try Assets.require("vocab/ggml-vocab-gpt-2.gguf").path)
        XCTAssertEqual(tok.vocabSize, 50257)
        XCTAssertEqual(tok.eosTokenID, 50256)
        XCTAssertEqual(tok.fingerprint.count, 64, "fits the 64-byte fingerprint field of a shard header")
    }
}
