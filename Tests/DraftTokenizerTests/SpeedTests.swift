import DraftTokenizer
import Foundation
import XCTest

/// Single-threaded encode speed on the parity corpus, in MB per CPU-second of the encoding thread (CPU time, so other
/// load on a shared machine does not skew it). Compare with `scripts/reference/reference_ids.py --threads 1`, which
/// prints the same figure for Hugging Face tokenizers.
final class SpeedTests: XCTestCase {
    static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    func measure(_ tokenizer: String, tsv: String) throws {
        let url = try Assets.require(tokenizer)
        let lines = try String(contentsOf: Assets.repo.appendingPathComponent("scripts/reference/\(tsv)"), encoding: .utf8)
            .split(separator: "\n")
        let texts = lines.compactMap { line -> String? in
            guard let u = Assets.resolve(line.split(separator: "\t")[0]), let d = try? Data(contentsOf: u) else { return nil }
            return String(decoding: d, as: UTF8.self)
        }
        let bytes = texts.reduce(0) { $0 + $1.utf8.count }
        guard bytes >= 5_000_000 else { throw XCTSkip("corpus incomplete on this machine (\(bytes) bytes)") }
        let tok = try loadTokenizer(url.path)  // fresh: its word cache starts cold, as HF's does
        let c0 = Self.threadCPUSeconds(), w0 = Date()
        var ids = 0
        for t in texts { ids += tok.encode(t).count }
        let cpu = Self.threadCPUSeconds() - c0, wall = Date().timeIntervalSince(w0)
        let mb = Double(bytes) / 1e6
        print(String(format: "%@ single-threaded: %.2f MB, %d ids, cpu %.2f s = %.2f MB/s per cpu-second (wall %.2f s = %.2f MB/s)",
                     tokenizer, mb, ids, cpu, mb / cpu, wall, mb / wall))
    }

    /// Load time of each tokenizer (parse, merge table, SHA-256 of the whole file for the fingerprint).
    func testLoadTimes() throws {
        for f in ["tokenizers/smollm2/tokenizer.json", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                  "tokenizers/phi-3/tokenizer.json", "vocab/ggml-vocab-phi-3.gguf", "tokenizers/llama-bpe/tokenizer.json",
                  "vocab/ggml-vocab-llama-bpe.gguf"] {
            guard let url = try? Assets.require(f) else { continue }
            let t0 = Date()
            let tok = try loadTokenizer(url.path)
            print(String(format: "load %@: %.2f s (vocab %d)", f, Date().timeIntervalSince(t0), tok.vocabSize))
        }
    }

    func testSmolLM2SingleThreadSpeed() throws {
        try measure("tokenizers/smollm2/tokenizer.json", tsv: "parity-smollm2.tsv")
    }

    func testPhi3SingleThreadSpeed() throws {
        try measure("tokenizers/phi-3/tokenizer.json", tsv: "parity-phi-3.tsv")
    }
}
