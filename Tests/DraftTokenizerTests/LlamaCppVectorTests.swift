import DraftTokenizer
import Foundation
import XCTest

/// llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf.inp/.out`, made with Hugging Face tokenizers):
/// every case of each vocabulary must match exactly.
final class LlamaCppVectorTests: XCTestCase {
    /// The cases of a `.inp`/`.out` pair: inputs separated by a `__ggml_vocab_test__` line, outputs one line each.
    static func vectors(_ vocab: String) throws -> (URL, [(String, [Int32])]) {
        let gguf = try Assets.require("vocab/ggml-vocab-\(vocab).gguf")
        let inp = try String(contentsOf: URL(fileURLWithPath: gguf.path + ".inp"), encoding: .utf8)
        let out = try String(contentsOf: URL(fileURLWithPath: gguf.path + ".out"), encoding: .utf8)
        let sep = "\n__ggml_vocab_test__\n"
        var inputs = [String]()
        var rest = Substring(inp)
        while let r = rest.range(of: sep) {
            inputs.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        let outputs = out.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.split(separator: " ").compactMap { Int32($0) }
        }
        XCTAssertGreaterThanOrEqual(outputs.count, inputs.count, "\(vocab): fewer outputs than inputs")
        return (gguf, inputs.enumerated().map { ($0.element, outputs[$0.offset]) })
    }

    func check(_ vocab: String, tokenizer path: URL? = nil) throws {
        let (gguf, cases) = try Self.vectors(vocab)
        let tok = try loadTokenizer((path ?? gguf).path)
        XCTAssertGreaterThan(cases.count, 30)
        var failures = 0
        for (text, want) in cases {
            let got = tok.encode(text)
            if got != want {
                failures += 1
                XCTFail("\(vocab): \(text.debugDescription)\n  want \(want)\n  got  \(got)")
            }
        }
        XCTAssertEqual(failures, 0, "\(vocab): \(failures) of \(cases.count) cases differ")
    }

    func testPhi3() throws { try check("phi-3") }
    func testLlamaSPM() throws { try check("llama-spm") }
    func testLlamaBPE() throws { try check("llama-bpe") }
    func testGPT2() throws { try check("gpt-2") }
    func testQwen2() throws { try check("qwen2") }

    // The tokenizer.json files made from the same GGUFs (scripts/fetch_assets.py) must pass the same vectors:
    // the HF path with Prepend/Replace normalizers, ByteLevel, Split with the Llama-3 and Qwen2 regexes, NFC.
    func testPhi3TokenizerJSON() throws { try check("phi-3", tokenizer: try Assets.require("tokenizers/phi-3/tokenizer.json")) }
    func testGPT2TokenizerJSON() throws { try check("gpt-2", tokenizer: try Assets.require("tokenizers/gpt-2/tokenizer.json")) }
    func testLlamaBPETokenizerJSON() throws {
        try check("llama-bpe", tokenizer: try Assets.require("tokenizers/llama-bpe/tokenizer.json"))
    }
    /// The Metaspace pre-tokenizer and decoder (newer SentencePiece-style tokenizer.json files), on the Phi-3
    /// vocabulary and the Phi-3 test strings, against HF tokenizers computed live (skipped without it).
    func testMetaspaceAgainstTokenizersLive() throws {
        let (gguf, cases) = try Self.vectors("phi-3")
        let json = try Assets.require("tokenizers/phi-3/tokenizer.json")
        try Assets.requireTokenizers()
        for scheme in ["always", "first", "never"] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-metaspace-\(UUID())")
            defer { try? FileManager.default.removeItem(at: dir) }
            let script = Assets.repo.appendingPathComponent("scripts/reference/metaspace_variant.py").path
            guard Assets.run([Assets.python, script, json.path, gguf.path + ".inp", scheme, dir.path]) != nil else {
                return XCTFail("\(script) failed")
            }
            let tok = try loadTokenizer(dir.appendingPathComponent("tokenizer.json").path)
            let want = try String(contentsOf: dir.appendingPathComponent("ids.txt"), encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false).map { $0.split(separator: " ").compactMap { Int32($0) } }
            for (k, (text, _)) in cases.enumerated() {
                XCTAssertEqual(tok.encode(text), want[k], "Metaspace \(scheme): \(text.debugDescription)")
            }
        }
    }

    func testQwen2TokenizerJSON() throws { try check("qwen2", tokenizer: try Assets.require("tokenizers/qwen2/tokenizer.json")) }
}
