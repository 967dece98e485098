import DraftCheckpoint
import DraftFormats
import Foundation
import XCTest

/// `swiftdraft export` on a draft trained with SmolLM2's tokenizer: what the files hold, read back with our own
/// readers (bit-exact at f32), and the refusals that leave nothing behind.
final class ExportTests: XCTestCase {
    static let cache = SmolLM2DraftFixture.cache
    static var work: URL!
    static var run: URL!

    override class func setUp() {
        super.setUp()
        do {
            work = try CLI.temporaryDirectory("export")
            run = try SmolLM2DraftFixture.train(in: work, steps: 4)
        } catch {
            XCTFail("\(error)")
        }
    }

    override class func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
        super.tearDown()
    }

    func checkpointTensors() throws -> [String: [Float]] {
        let url = try resolveCheckpointFile(Self.run.path)
        let reader = try CheckpointReader(url: url)
        var out: [String: [Float]] = [:]
        for info in reader.tensors where info.group == .model {
            var values = [Float](repeating: 0, count: info.count)
            try values.withUnsafeMutableBufferPointer { try reader.read(info, into: $0) }
            out[info.name] = values
        }
        return out
    }

    func testHuggingFaceExport() throws {
        let out = Self.work.appendingPathComponent("hf")
        let r = try CLI.run(["export", "--checkpoint", Self.run.path, "--format", "hf", "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        XCTAssertTrue(files.isSuperset(of: ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                            "special_tokens_map.json", "README.md"]), "\(files)")
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(config["hidden_size"] as? Int, 64)
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 2)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(config["vocab_size"] as? Int, 49152)
        let weights = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        let expected = try checkpointTensors()
        XCTAssertEqual(Set(weights.entries.keys), Set(expected.keys))
        for (name, values) in expected { XCTAssertEqual(try weights.tensor(name), values, name) }
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("tokenizer.json")),
                       try Data(contentsOf: Self.cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json")))
    }

    func testGGUFExport() throws {
        let target = Self.cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        let expected = try checkpointTensors()
        for type in ["f32", "q8_0"] {
            let out = Self.work.appendingPathComponent("gguf-\(type)")
            let r = try CLI.run(["export", "--checkpoint", Self.run.path, "--format", "gguf", "--dtype", type,
                                 "--target", target.path, "--output", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let file = try GGUFFile(path: out.appendingPathComponent("draft-\(type).gguf").path)
            let targetFile = try GGUFFile(path: target.path)
            XCTAssertEqual(file.metadata["general.architecture"], .string("llama"))
            XCTAssertEqual(file.metadata["llama.rope.dimension_count"], .uint32(16))
            XCTAssertEqual(file.metadata["llama.attention.head_count_kv"], .uint32(2))
            XCTAssertEqual(file.metadata["tokenizer.ggml.tokens"], targetFile.metadata["tokenizer.ggml.tokens"])
            XCTAssertEqual(file.metadata["tokenizer.ggml.merges"], targetFile.metadata["tokenizer.ggml.merges"])
            XCTAssertEqual(file.tensors.count, 1 + 2 * 9 + 1, "tied: no output.weight")
            let q = try XCTUnwrap(file.tensor(named: "blk.1.attn_q.weight"))
            XCTAssertEqual(q.dimensions, [64, 64])
            XCTAssertEqual(q.type, type == "f32" ? .f32 : .q8_0)
            var values = [Float](repeating: 0, count: q.elementCount)
            values.withUnsafeMutableBufferPointer { dequantize(q.type, file.data(q).baseAddress!, into: $0.baseAddress!, count: q.elementCount) }
            let unpermuted = try RotaryRowPermutation.permute(values, rows: 64, columns: 64, heads: 4, direction: .ggufToHF)
            let reference = try XCTUnwrap(expected["model.layers.1.self_attn.q_proj.weight"])
            if type == "f32" {
                XCTAssertEqual(unpermuted, reference)
            } else {
                let scale = reference.map(abs).max()!
                let worst = zip(unpermuted, reference).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, scale / 127 * 0.51 + 1e-7, "Q8_0 rounding is at most half a step")
            }
        }
    }

    func testBadInputLeavesNothingBehind() throws {
        let taken = Self.work.appendingPathComponent("taken")
        try FileManager.default.createDirectory(at: taken, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: taken.appendingPathComponent("keep.txt"))
        var cases: [([String], String)] = [
            (["--format", "hf", "--output", taken.path], "not empty"),
            (["--format", "hf", "--dtype", "q4_0", "--output", Self.work.appendingPathComponent("a").path], "--dtype"),
            (["--format", "onnx", "--output", Self.work.appendingPathComponent("b").path], "--format"),
            (["--format", "gguf", "--output", Self.work.appendingPathComponent("c").path], "--target"),
            (["--format", "gguf", "--dtype", "bf16", "--output", Self.work.appendingPathComponent("e").path], "--dtype"),
        ]
        // A target whose tokenizer is not the draft's: its tokenizer metadata cannot be written for this draft.
        let otherVocabulary = Self.cache.appendingPathComponent("llama.cpp/0.3.36/src/models/ggml-vocab-gpt-2.gguf")
        if FileManager.default.fileExists(atPath: otherVocabulary.path) {
            cases.append((["--format", "gguf", "--target", otherVocabulary.path, "--output",
                           Self.work.appendingPathComponent("f").path], "is not the draft's"))
        }
        for (arguments, needle) in cases {
            let r = try CLI.run(["export", "--checkpoint", Self.run.path] + arguments)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(needle), "\(arguments): \(r.stderr)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: taken.path), ["keep.txt"])
        let replaced = try CLI.run(["export", "--checkpoint", Self.run.path, "--format", "hf", "--output", taken.path, "--overwrite"])
        XCTAssertEqual(replaced.status, 0, replaced.stderr)
        let now = Set(try FileManager.default.contentsOfDirectory(atPath: taken.path))
        XCTAssertTrue(now.contains("config.json") && !now.contains("keep.txt"), "--overwrite replaces the directory: \(now)")
        for name in ["a", "b", "c", "e", "f"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work.appendingPathComponent(name).path))
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: Self.work.path).filter { $0.contains(".partial-") }
        XCTAssertEqual(leftovers, [])
        // A damaged checkpoint.
        let broken = Self.work.appendingPathComponent("broken.h5")
        try Data(repeating: 7, count: 4096).write(to: broken)
        let r = try CLI.run(["export", "--checkpoint", broken.path, "--format", "hf", "--output",
                             Self.work.appendingPathComponent("d").path])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work.appendingPathComponent("d").path))
    }
}
