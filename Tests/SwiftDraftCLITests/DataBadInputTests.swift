import Foundation
import DraftData
import DraftTokenizer
import XCTest

/// Bad data, end to end through the binary: every case exits 2 with exactly one line on stderr that names the file and
/// what was expected, and leaves nothing behind (no shard directory, no staging directory, no run directory).
final class DataBadInputTests: XCTestCase {
    private var work: URL!
    /// A valid byte-level shard directory (manifest + train-000000.bin) of ~9 KB of code.
    private var data: URL!
    private let fm = FileManager.default

    override func setUpWithError() throws {
        work = try CLI.temporaryDirectory("databad")
        let text = work.appendingPathComponent("text.txt")
        try String(repeating: "def f(x):\n    return x + 1\n", count: 350).write(to: text, atomically: true, encoding: .utf8)
        data = work.appendingPathComponent("data")
        let r = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input", text.path, "--output", data.path])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    override func tearDownWithError() throws { try? fm.removeItem(at: work) }

    private var cache: URL {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty {
            return URL(fileURLWithPath: (c as NSString).expandingTildeInPath)
        }
        return fm.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }

    private func cached(_ relative: String) throws -> URL {
        let url = cache.appendingPathComponent(relative)
        guard fm.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) missing: run scripts/fetch-assets.sh first") }
        return url
    }

    private var runDirectory: URL { work.appendingPathComponent("run") }

    private func writeConfig(dataPath: String, tokenizer: String = "bytes", vocab: Int = 264) throws -> URL {
        let url = work.appendingPathComponent("config.yaml")
        try """
            run: {name: databad, dir: \(runDirectory.path), seed: 5}
            model: {vocab_size: \(vocab), dim: 32, layers: 1, heads: 2, kv_heads: 1, ffn_dim: 64, max_seq_len: 32}
            tokenizer: \(tokenizer)
            data: {seq_len: 32, sources: {code: {path: \(dataPath)}}}
            schedule: {global_batch_tokens: 256, micro_batch: 8, stages: [{name: s, tokens: 1024, mixture: {code: 1.0}}]}
            log: {every_steps: 1, eval_every_steps: 2, eval_sequences: 4}
            """.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// One line, exit 2, naming `file` and containing `expected` (what the reader wanted).
    private func assertOneLineBadInput(_ r: CLI.Result, naming file: String, saying expected: String,
                                       file f: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, "exit code; stderr: \(r.stderr)", file: f, line: line)
        // '\r' counts as a line break too: a progress line rewritten in place would otherwise hide in the output.
        let lines = r.stderr.split(whereSeparator: \.isNewline)
        XCTAssertEqual(lines.count, 1, "exactly one line on stderr, got: \(r.stderr.debugDescription)", file: f, line: line)
        XCTAssertTrue(r.stderr.contains(file), "stderr should name \(file): \(r.stderr)", file: f, line: line)
        XCTAssertTrue(r.stderr.contains(expected), "stderr should say \(expected.debugDescription): \(r.stderr)", file: f, line: line)
    }

    /// `train` on `dataPath` fails as bad input naming `file`, and creates no run directory.
    private func expectTrainRejects(dataPath: String, naming file: String, saying expected: String,
                                    tokenizer: String = "bytes", vocab: Int = 264,
                                    file f: StaticString = #filePath, line: UInt = #line) throws {
        let config = try writeConfig(dataPath: dataPath, tokenizer: tokenizer, vocab: vocab)
        let r = try CLI.run(["train", "--config", config.path, "--quiet"])
        assertOneLineBadInput(r, naming: file, saying: expected, file: f, line: line)
        XCTAssertFalse(fm.fileExists(atPath: runDirectory.path), "no run directory may be left", file: f, line: line)
    }

    /// `tokenize` fails as bad input naming `file`, and leaves neither the output nor a staging directory.
    private func expectTokenizeRejects(_ arguments: [String], output: URL, naming file: String, saying expected: String,
                                       file f: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(["tokenize"] + arguments + ["--output", output.path])
        assertOneLineBadInput(r, naming: file, saying: expected, file: f, line: line)
        XCTAssertFalse(fm.fileExists(atPath: output.path), "no shard directory may be left", file: f, line: line)
        let leftovers = (try? fm.contentsOfDirectory(atPath: output.deletingLastPathComponent().path))?
            .filter { $0.contains(".partial-") || $0.hasSuffix(".tmp") } ?? []
        XCTAssertEqual(leftovers, [], "no staging directory may be left", file: f, line: line)
    }

    /// A copy of the valid shard directory, with its one training shard returned for corruption.
    private func copyOfData(_ name: String) throws -> (directory: URL, shard: URL) {
        let copy = work.appendingPathComponent(name)
        try fm.copyItem(at: data, to: copy)
        return (copy, copy.appendingPathComponent("train-000000.bin"))
    }

    private func patch(_ url: URL, at offset: Int, with bytes: [UInt8]) throws {
        var contents = try Data(contentsOf: url)
        contents.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        try contents.write(to: url)
    }

    private func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// An llm.c shard: 256 int32s of header (magic 20240520, version, token count), then uint16 ids.
    private func writeLLMCShard(_ ids: [UInt16], to url: URL, version: Int32 = 1) throws {
        var header = [Int32](repeating: 0, count: 256)
        header[0] = 20_240_520
        header[1] = version
        header[2] = Int32(ids.count)
        var bytes = header.withUnsafeBytes { Data($0) }
        ids.map(\.littleEndian).withUnsafeBytes { bytes.append(contentsOf: $0) }
        try bytes.write(to: url)
    }

    // MARK: Shards given to train

    func testMissingShardFile() throws {
        let (directory, shard) = try copyOfData("missing")
        try fm.removeItem(at: shard)
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "cannot open token shard")
        // A source that names a shard file directly.
        let absent = work.appendingPathComponent("absent.bin").path
        try expectTrainRejects(dataPath: absent, naming: absent, saying: "does not exist")
    }

    func testTruncatedShard() throws {
        let (directory, shard) = try copyOfData("truncated")
        let full = try Data(contentsOf: shard)
        try full.prefix(full.count - 7).write(to: shard)
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "truncated token shard")
        // Cut inside the header.
        try full.prefix(100).write(to: shard)
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "header needs 256")
        // Shorter than any magic.
        try full.prefix(5).write(to: shard)
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "shorter than any header")
    }

    func testWrongMagic() throws {
        let (directory, shard) = try copyOfData("magic")
        try patch(shard, at: 0, with: Array("SWDTOKEX".utf8))
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "expected magic 'SWDTOKEN'")
    }

    func testWrongFormatVersion() throws {
        let (directory, shard) = try copyOfData("version")
        try patch(shard, at: 8, with: littleEndian(UInt32(7)))
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "format version 7, expected 1")
        let llmc = work.appendingPathComponent("llmc-v2.bin")
        try writeLLMCShard(Array(repeating: 65, count: 400), to: llmc, version: 2)
        try expectTrainRejects(dataPath: llmc.path, naming: llmc.path, saying: "version 2, expected 1")
    }

    /// Counts far beyond the file (as a corrupt header holds) are an error message, not an arithmetic trap.
    func testAbsurdHeaderCounts() throws {
        let (directory, shard) = try copyOfData("absurd")
        try patch(shard, at: 24, with: littleEndian(UInt64.max))
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "truncated token shard")
        try patch(shard, at: 24, with: littleEndian(UInt64(8750)))
        try patch(shard, at: 16, with: littleEndian(UInt64.max))
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "vocabulary size")
        let llmc = work.appendingPathComponent("llmc-negative.bin")
        try writeLLMCShard(Array(repeating: 65, count: 400), to: llmc)
        try patch(llmc, at: 8, with: littleEndian(Int32(-5)))
        try expectTrainRejects(dataPath: llmc.path, naming: llmc.path, saying: "token count -5")
    }

    func testTokenIDBeyondModelVocabulary() throws {
        // An llm.c shard carries no vocabulary, so its ids are scanned: one id of 60000 among bytes.
        let llmc = work.appendingPathComponent("llmc")
        try fm.createDirectory(at: llmc, withIntermediateDirectories: true)
        var ids = [UInt16](repeating: 97, count: 2000)
        ids[1234] = 60_000
        let shard = llmc.appendingPathComponent("train_000000.bin")
        try writeLLMCShard(ids, to: shard)
        try expectTrainRejects(dataPath: llmc.path, naming: shard.path, saying: "token id 60000 is not below model.vocab_size 264")
        // A SwiftDraft shard whose header declares a bigger vocabulary than the model has (same tokenizer identity, so
        // the check that fires is the vocabulary one).
        let (directory, bigger) = try copyOfData("bigvocab")
        try patch(bigger, at: 16, with: littleEndian(UInt64(50_000)))
        try expectTrainRejects(dataPath: directory.path, naming: bigger.path, saying: "vocabulary of 50000 ids exceeds model.vocab_size 264")
    }

    func testTokenizerHashDiffersFromConfig() throws {
        // No assets needed: the shard's recorded tokenizer identity is changed.
        let (directory, shard) = try copyOfData("otherhash")
        try patch(shard, at: 40, with: Array(String(repeating: "ab", count: 32).utf8))
        try expectTrainRejects(dataPath: directory.path, naming: shard.path, saying: "made with tokenizer abab")
    }

    func testShardsOfSmolLM2TokenizerJSONAcceptedByGGUFRefusedByBytes() throws {
        let json = try cached("tokenizers/smollm2/tokenizer.json")
        let gguf = try cached("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        let text = work.appendingPathComponent("text.txt")
        let smol = work.appendingPathComponent("smol")
        let r = try CLI.run(["tokenize", "--tokenizer", json.path, "--input", text.path, "--output", smol.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let shard = smol.appendingPathComponent("train-000000.bin").path
        // Same tokenizer by content (its fingerprint is not the file's hash): the GGUF accepts these shards.
        XCTAssertNoThrow(try DataSource(name: "smol", path: smol.path)
            .validate(tokenizer: try loadTokenizer(gguf.path), modelVocab: 49_152, seqLen: 8))
        try expectTrainRejects(dataPath: smol.path, naming: shard, saying: "the config's tokenizer is swiftdraft-bytes-v1")
    }

    // MARK: Bad input to tokenize

    func testEmptyInputToTokenize() throws {
        let output = work.appendingPathComponent("out")
        let empty = work.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        try expectTokenizeRejects(["--tokenizer", "bytes", "--input", empty.path], output: output,
                                  naming: empty.path, saying: "no documents with text")
        let hollow = work.appendingPathComponent("hollow")
        try fm.createDirectory(at: hollow, withIntermediateDirectories: true)
        try expectTokenizeRejects(["--tokenizer", "bytes", "--input", hollow.path], output: output,
                                  naming: hollow.path, saying: "no input files")
        // Only non-text files: skipped, so nothing is left to tokenize.
        let binary = work.appendingPathComponent("blob.pyc")
        try Data([0, 1, 2, 0xFF, 0xFE, 0]).write(to: binary)
        try expectTokenizeRejects(["--tokenizer", "bytes", "--input", binary.path], output: output,
                                  naming: binary.path, saying: "no documents with text")
        let records = work.appendingPathComponent("records.jsonl")
        try "{\"text\": \"\"}\n\n{\"text\": \"\"}\n".write(to: records, atomically: true, encoding: .utf8)
        try expectTokenizeRejects(["--tokenizer", "bytes", "--format", "jsonl", "--input", records.path], output: output,
                                  naming: records.path, saying: "JSONL records with field 'text'")
        let missing = work.appendingPathComponent("nowhere.txt")
        try expectTokenizeRejects(["--tokenizer", "bytes", "--input", missing.path], output: output,
                                  naming: missing.path, saying: "no such file or directory")
    }

    /// A failed re-tokenize keeps the previous complete output as it was.
    func testFailedTokenizeKeepsEarlierOutput() throws {
        let empty = work.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let before = try Data(contentsOf: data.appendingPathComponent("train-000000.bin"))
        let r = try CLI.run(["tokenize", "--tokenizer", "bytes", "--input", empty.path, "--output", data.path])
        assertOneLineBadInput(r, naming: empty.path, saying: "no documents")
        XCTAssertEqual(try Data(contentsOf: data.appendingPathComponent("train-000000.bin")), before)
    }

    func testMalformedTokenizerJSON() throws {
        let text = work.appendingPathComponent("text.txt").path
        let output = work.appendingPathComponent("out")
        let broken = work.appendingPathComponent("broken.json")
        try "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0".write(to: broken, atomically: true, encoding: .utf8)
        try expectTokenizeRejects(["--tokenizer", broken.path, "--input", text], output: output,
                                  naming: broken.path, saying: "malformed JSON")
        let wrongShape = work.appendingPathComponent("wrong.json")
        try "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}".write(to: wrongShape, atomically: true, encoding: .utf8)
        try expectTokenizeRejects(["--tokenizer", wrongShape.path, "--input", text], output: output,
                                  naming: wrongShape.path, saying: "expected BPE")
        let absent = work.appendingPathComponent("absent.json")
        try expectTokenizeRejects(["--tokenizer", absent.path, "--input", text], output: output,
                                  naming: absent.path, saying: "cannot read the tokenizer file")
    }

    func testTruncatedGGUF() throws {
        let text = work.appendingPathComponent("text.txt").path
        let output = work.appendingPathComponent("out")
        // Asset-free: a GGUF v3 header promising metadata that is not there.
        let stub = work.appendingPathComponent("stub.gguf")
        var bytes = Data("GGUF".utf8)
        bytes.append(contentsOf: littleEndian(UInt32(3)) + littleEndian(UInt64(0)) + littleEndian(UInt64(20)))
        bytes.append(contentsOf: littleEndian(UInt64(30)) + Array("tokenizer.gg".utf8))
        try bytes.write(to: stub)
        try expectTokenizeRejects(["--tokenizer", stub.path, "--input", text], output: output, naming: stub.path, saying: "truncated GGUF")
        // The real SmolLM2 GGUF cut in the middle of its token list.
        let gguf = try cached("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        let handle = try FileHandle(forReadingFrom: gguf)
        let head = try handle.read(upToCount: 300_000) ?? Data()
        try handle.close()
        let cut = work.appendingPathComponent("cut.gguf")
        try head.write(to: cut)
        try expectTokenizeRejects(["--tokenizer", cut.path, "--input", text], output: output, naming: cut.path, saying: "truncated GGUF")
    }

    // MARK: llm.c shards are data too

    /// A directory of llm.c `.bin` shards, named as llm.c names them (`*_train_*` / `*_val_*`), trains, and its
    /// `_val_` shard is held out for the validation loss rather than trained on.
    func testTrainsOnLLMCShards() throws {
        let llmc = work.appendingPathComponent("llmc-ok")
        try fm.createDirectory(at: llmc, withIntermediateDirectories: true)
        let code = try Data(contentsOf: work.appendingPathComponent("text.txt")).map { UInt16($0) }
        try writeLLMCShard(code, to: llmc.appendingPathComponent("fineweb_train_000001.bin"))
        try writeLLMCShard(Array(code.prefix(1000)), to: llmc.appendingPathComponent("fineweb_val_000000.bin"))
        let config = try writeConfig(dataPath: llmc.path)
        let r = try CLI.run(["train", "--config", config.path, "--quiet", "--max-steps", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try readMetrics(runDirectory)
        let steps = lines.filter { $0["event"] == nil && $0["loss"] != nil }
        XCTAssertEqual(steps.compactMap { $0["step"] as? Int }.max(), 4, "\(steps)")
        for line in steps { XCTAssertTrue(((line["loss"] as? Double) ?? .nan).isFinite, "\(line)") }
        let evals = lines.filter { ($0["event"] as? String) == "eval" }
        XCTAssertFalse(evals.isEmpty, "the _val_ shard gives a validation loss: \(lines)")
    }
}
