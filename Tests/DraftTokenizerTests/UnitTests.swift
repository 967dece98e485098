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

    func testFingerprintIsFileSHA256() throws {
        let url = try Assets.require("vocab/ggml-vocab-gpt-2.gguf")
        let tok = try loadTokenizer(url.path)
        XCTAssertEqual(tok.fingerprint, Assets.sha256(try Data(contentsOf: url)))
        XCTAssertEqual(tok.vocabSize, 50257)
        XCTAssertEqual(tok.eosTokenID, 50256)
    }
}
