import DraftData
import DraftTokenizer
import Foundation
import XCTest

/// Shards are checked against the run's tokenizer by content fingerprint; shards written before content
/// fingerprints (the tokenizer file's SHA-256 in the header) are still accepted for that same file.
final class TokenizerFingerprintTests: XCTestCase {
    private var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-fpdata-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    static let tinyJSON = """
    {"added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": true}], "normalizer": null,
     "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "post_processor": null,
     "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "<|endoftext|>": 5}, "merges": ["a b", "Ġ ab"]}}
    """

    private func source(fingerprint: String, name: String) throws -> DataSource {
        let dir = work.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try TokenShardWriter.write((0..<200).map { Int32($0 % 5) }, documents: 1, vocabSize: 6, fingerprint: fingerprint,
                                   to: dir.appendingPathComponent("train-0.bin"))
        return try DataSource(name: name, path: dir.path)
    }

    func testContentAndLegacyFingerprintsAcceptedOthersRefused() throws {
        let file = work.appendingPathComponent("tokenizer.json")
        try Data(Self.tinyJSON.utf8).write(to: file)
        let tok = try loadTokenizer(file.path)
        var sha = SHA256()
        sha.update(Array(Self.tinyJSON.utf8))
        let fileHash = SHA256.hexString(sha.finalize())
        XCTAssertNotEqual(fileHash, tok.fingerprint)

        XCTAssertNoThrow(try source(fingerprint: tok.fingerprint, name: "current").validate(tokenizer: tok, modelVocab: 6, seqLen: 16))
        XCTAssertNoThrow(try source(fingerprint: fileHash, name: "legacy").validate(tokenizer: tok, modelVocab: 6, seqLen: 16))
        let other = String(repeating: "ab", count: 32)
        XCTAssertThrowsError(try source(fingerprint: other, name: "other").validate(tokenizer: tok, modelVocab: 6, seqLen: 16)) { e in
            let message = String(describing: e)
            XCTAssertTrue(message.contains(other) && message.contains("swiftdraft tokenize"), message)
        }
        // The fingerprint-only check stays exact: it has no file to hash.
        XCTAssertThrowsError(try source(fingerprint: fileHash, name: "exact")
            .validate(tokenizerFingerprint: tok.fingerprint, modelVocab: 6, seqLen: 16))
    }
}
