import DraftTokenizer
import Foundation
import XCTest

/// Zero mismatching ids against Hugging Face `tokenizers` on ~20 MB of real text (CPython's standard library and
/// Shakespeare), for SmolLM2 and Phi-3, loaded from tokenizer.json and from GGUF.
///
/// The reference is `scripts/reference/parity-<name>.tsv` (made by scripts/reference/reference_ids.py): per file its
/// content hash, id count and the SHA-256 of its ids. A file whose content differs on this machine is re-referenced
/// live when python3 has `tokenizers`, else left out; at least 5 MB must be compared.
final class CorpusParityTests: XCTestCase {
    struct Reference {
        let name: Substring
        let url: URL
        let count: Int
        let digest: Substring
    }

    static let minimumBytes = 5_000_000

    func references(_ tsv: String, tokenizerJSON: URL?) throws -> (refs: [Reference], texts: [String], bytes: Int, left: Int) {
        let path = Assets.repo.appendingPathComponent("scripts/reference/\(tsv)")
        let lines = try String(contentsOf: path, encoding: .utf8).split(separator: "\n")
        var refs = [Reference](), texts = [String](), bytes = 0
        var changed = [(Substring, URL, Data)]()
        for line in lines {
            let f = line.split(separator: "\t")
            guard f.count == 4, let count = Int(f[2]), let url = Assets.resolve(f[0]) else {
                XCTFail("\(path.path): bad line '\(line)'"); continue
            }
            guard let data = try? Data(contentsOf: url) else { continue }
            if Assets.sha256(data).prefix(16) != f[1] { changed.append((f[0], url, data)); continue }
            refs.append(Reference(name: f[0], url: url, count: count, digest: f[3]))
            texts.append(String(decoding: data, as: UTF8.self))
            bytes += data.count
        }
        var left = changed.count
        if !changed.isEmpty && Assets.pythonTokenizers, let tokenizerJSON {
            let list = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-parity-\(UUID()).txt")
            defer { try? FileManager.default.removeItem(at: list) }
            try changed.map { String($0.0) }.joined(separator: "\n").write(to: list, atomically: true, encoding: .utf8)
            if let out = Assets.run([Assets.python, Assets.repo.appendingPathComponent("scripts/reference/reference_ids.py").path,
                                     "--tokenizer", tokenizerJSON.path, "--list", list.path, "--out", "-"]) {
                for (line, c) in zip(out.split(separator: "\n"), changed) {
                    let f = line.split(separator: "\t")
                    guard f.count == 4, let count = Int(f[2]) else { continue }
                    refs.append(Reference(name: c.0, url: c.1, count: count, digest: f[3]))
                    texts.append(String(decoding: c.2, as: UTF8.self))
                    bytes += c.2.count
                    left -= 1
                }
            }
        }
        return (refs, texts, bytes, left)
    }

    func check(tsv: String, tokenizer: String, referenceJSON: String, roundTrip: Bool) throws {
        let tokURL = try Assets.require(tokenizer)
        // The reference tokenizer.json only re-references changed files live and diagnoses a mismatch: the GGUF
        // paths are checked against the committed digests without it (transformers needs PyTorch to make it).
        let refJSON = try? Assets.require(referenceJSON)
        let (refs, texts, bytes, left) = try references(tsv, tokenizerJSON: refJSON)
        if bytes < Self.minimumBytes {
            throw XCTSkip("only \(bytes) bytes of the corpus are on this machine unchanged (need 5 MB; run scripts/fetch-assets.sh)")
        }
        let tok = try loadTokenizer(tokURL.path)
        let t0 = Date()
        let encoded = tok.encodeBatch(texts)
        let seconds = Date().timeIntervalSince(t0)
        var mismatches = [String](), total = 0
        for (r, ids) in zip(refs, encoded) {
            total += ids.count
            if ids.count != r.count || Assets.sha256(ids) != r.digest {
                mismatches.append("\(r.name) (\(ids.count) ids, want \(r.count))")
            }
        }
        print("\(tokenizer): \(refs.count) files, \(bytes) bytes, \(total) ids, \(left) files left out; "
              + String(format: "encodeBatch %.2f s (%.2f MB/s on all cores)", seconds, Double(bytes) / 1e6 / seconds))
        XCTAssertEqual(mismatches.count, 0, "\(tokenizer): \(mismatches.count) files differ from tokenizers, first: "
                       + mismatches.prefix(5).joined(separator: ", "))
        if let first = mismatches.first, let i = refs.firstIndex(where: { first.hasPrefix($0.name) }), let refJSON {
            diagnose(refs[i], encoded[i], referenceJSON: refJSON, tokenizer: tok)
        }
        if roundTrip {
            var bad = [Substring]()
            for (r, (text, ids)) in zip(refs, zip(texts, encoded)) where tok.decode(ids) != text { bad.append(r.name) }
            XCTAssertEqual(bad.count, 0, "\(tokenizer): decode(encode(s)) != s for \(bad.count) files, first: \(bad.prefix(5))")
        }
    }

    /// Shows the first differing id of a mismatching file, with HF's ids computed live.
    func diagnose(_ r: Reference, _ got: [Int32], referenceJSON: URL, tokenizer: any Tokenizer) {
        guard Assets.pythonTokenizers else { return }
        let dir = FileManager.default.temporaryDirectory
        let list = dir.appendingPathComponent("swiftdraft-diag-\(UUID()).txt")
        let dump = dir.appendingPathComponent("swiftdraft-diag-\(UUID()).bin")
        defer { try? FileManager.default.removeItem(at: list); try? FileManager.default.removeItem(at: dump) }
        guard (try? String(r.name).write(to: list, atomically: true, encoding: .utf8)) != nil,
              Assets.run([Assets.python, Assets.repo.appendingPathComponent("scripts/reference/reference_ids.py").path,
                          "--tokenizer", referenceJSON.path, "--list", list.path, "--out", "-", "--dump", dump.path]) != nil,
              let data = try? Data(contentsOf: dump) else { return }
        let want = data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        let k = (0..<min(want.count, got.count)).first { want[$0] != got[$0] } ?? min(want.count, got.count)
        let lo = max(0, k - 5)
        func show(_ ids: [Int32]) -> String {
            ids[lo..<min(ids.count, k + 8)].map { "\($0):\(tokenizer.decode([$0]).debugDescription)" }.joined(separator: " ")
        }
        XCTFail("\(r.name): first difference at id \(k)\n  want \(show(want))\n  got  \(show(got))")
    }

    func testSmolLM2TokenizerJSON() throws {
        try check(tsv: "parity-smollm2.tsv", tokenizer: "tokenizers/smollm2/tokenizer.json",
                  referenceJSON: "tokenizers/smollm2/tokenizer.json", roundTrip: true)
    }

    func testSmolLM2GGUF() throws {
        try check(tsv: "parity-smollm2.tsv", tokenizer: "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                  referenceJSON: "tokenizers/smollm2/tokenizer.json", roundTrip: false)
    }

    func testPhi3TokenizerJSON() throws {
        try check(tsv: "parity-phi-3.tsv", tokenizer: "tokenizers/phi-3/tokenizer.json",
                  referenceJSON: "tokenizers/phi-3/tokenizer.json", roundTrip: false)
    }

    // Llama-3 and Qwen2 exercise the two other split scanners on the same 20 MB (GGUF path against HF).
    func testLlama3GGUF() throws {
        try check(tsv: "parity-llama-bpe.tsv", tokenizer: "vocab/ggml-vocab-llama-bpe.gguf",
                  referenceJSON: "tokenizers/llama-bpe/tokenizer.json", roundTrip: true)
    }

    /// tokenizer.json path here: Qwen2's tokenizer.json applies NFC and llama.cpp does not, so its GGUF path
    /// (which follows llama.cpp) differs from HF by design on text that NFC changes (re/_casefix.py has U+1FBE).
    func testQwen2TokenizerJSON() throws {
        try check(tsv: "parity-qwen2.tsv", tokenizer: "tokenizers/qwen2/tokenizer.json",
                  referenceJSON: "tokenizers/qwen2/tokenizer.json", roundTrip: false)
    }

    func testPhi3GGUF() throws {
        try check(tsv: "parity-phi-3.tsv", tokenizer: "vocab/ggml-vocab-phi-3.gguf",
                  referenceJSON: "tokenizers/phi-3/tokenizer.json", roundTrip: false)
    }
}
