import DraftData
import DraftDevice
import DraftFormats
import DraftInference
import DraftModel
import DraftTraining
import Foundation
import XCTest

/// Exports of a briefly trained draft (SmolLM2's tokenizer, 48 steps on *Emma*) in the runtimes they are for:
/// llama.cpp's perplexity and speculative decoding with the real SmolLM2 target, SwiftDraft's own loaders
/// (`generate --model` on each export), and `train --init-from` an export. The draft is trained once per class; a
/// random one would make the perplexity check weak (every model is near ln(vocab) there).
final class ExportRuntimeTests: XCTestCase {
    static var work: URL!
    static var run: URL!
    static var config: URL!
    static var hf: URL!
    static var gguf: [String: URL] = [:]
    /// Held-out text: the opening of *Persuasion* (the draft trains on *Emma*).
    static var heldOut: URL!
    /// The draft's token shards (*Emma*).
    static var data: URL!
    static var target: URL { ExportTests.cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") }

    override class func setUp() {
        super.setUp()
        do {
            work = try CLI.temporaryDirectory("export-runtime")
            let austen = ExportTests.cache.appendingPathComponent("austen")
            let tokenizer = ExportTests.cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json").path
            let corpus = work.appendingPathComponent("emma.txt")
            try Data(try Data(contentsOf: austen.appendingPathComponent("emma.txt")).prefix(120_000)).write(to: corpus)
            heldOut = work.appendingPathComponent("persuasion.txt")
            try Data(try Data(contentsOf: austen.appendingPathComponent("persuasion.txt")).prefix(12_000)).write(to: heldOut)
            data = work.appendingPathComponent("data")
            let t = try CLI.run(["tokenize", "--tokenizer", tokenizer, "--input", corpus.path, "--output", data.path])
            guard t.status == 0 else { return XCTFail(t.stderr) }
            config = work.appendingPathComponent("config.yaml")
            try """
                run: {name: export-runtime, seed: 3}
                model: {vocab_size: 49152, dim: 64, layers: 2, heads: 4, kv_heads: 2, ffn_dim: 128, max_seq_len: 128, rope_theta: 100000.0}
                tokenizer: \(tokenizer)
                data: {seq_len: 64, sources: {text: {path: \(data.path)}}}
                schedule: {global_batch_tokens: 512, micro_batch: 4, stages: [{name: pretrain, tokens: 24576, mixture: {text: 1.0}}]}
                optimizer: {lr: 1.0e-2, min_lr: 1.0e-3}
                lr_schedule: {kind: cosine, warmup_tokens: 1024}
                distributed: {world_size: 1}
                checkpoint: {every_steps: 100, keep_last: 1}
                log: {every_steps: 1, eval_every_steps: 0, tensorboard: false}
                """.write(to: config, atomically: true, encoding: .utf8)
            run = work.appendingPathComponent("run")
            let r = try CLI.run(["train", "--config", config.path, "--run-dir", run.path, "--quiet"])
            guard r.status == 0 else { return XCTFail(r.stderr) }
            hf = work.appendingPathComponent("hf")
            let h = try CLI.run(["export", "--checkpoint", run.path, "--format", "hf", "--output", hf.path])
            guard h.status == 0 else { return XCTFail(h.stderr) }
            for type in ["f32", "q8_0"] {
                let out = work.appendingPathComponent("gguf-\(type)")
                let g = try CLI.run(["export", "--checkpoint", run.path, "--format", "gguf", "--dtype", type,
                                     "--target", target.path, "--output", out.path])
                guard g.status == 0 else { return XCTFail(g.stderr) }
                gguf[type] = out.appendingPathComponent("draft-\(type).gguf")
            }
        } catch {
            XCTFail("\(error)")
        }
    }

    override class func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
        super.tearDown()
    }

    /// llama.cpp's tools, built once per machine by scripts/build-llama-cpp.sh.
    func llamaBin() throws -> URL {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/build-llama-cpp.sh")
        let r = try CLI.run([script.path], environment: ["LLAMA_TARGETS": "llama-perplexity llama-speculative llama-simple"],
                            executable: URL(fileURLWithPath: "/bin/bash"))
        guard r.status == 0, let line = r.stdout.split(separator: "\n").last else {
            throw XCTSkip("llama.cpp could not be built: \(r.stderr.suffix(500))")
        }
        return URL(fileURLWithPath: String(line))
    }

    /// Runs a llama.cpp tool, once more when its summary lines are missing: its logger writes from a thread that the
    /// process does not wait for at exit, so the last lines are sometimes lost (llama.cpp issue 22142).
    func llamaTool(_ tool: URL, _ arguments: [String], complete: (CLI.Result) -> Bool) throws -> CLI.Result {
        var r = try CLI.run(arguments, executable: tool)
        if r.status == 0 && !complete(r) { r = try CLI.run(arguments, executable: tool) }
        return r
    }

    /// llama-perplexity's estimate: its final line, else the running estimate after the last chunk (`[chunks]ppl,`),
    /// which is the same number.
    func perplexityEstimate(_ r: CLI.Result, chunks: Int) -> Double? {
        number(after: "Final estimate: PPL =", in: r.stdout + r.stderr) ?? number(after: "[\(chunks)]", in: r.stdout)
    }

    /// The first number after `label` in `text`.
    func number(after label: String, in text: String) -> Double? {
        guard let range = text.range(of: label) else { return nil }
        let rest = text[range.upperBound...].drop { !"0123456789.".contains($0) }
        return Double(rest.prefix { "0123456789.".contains($0) })
    }

    func testLlamaPerplexityAgreesWithScore() throws {
        let bin = try llamaBin()
        let context = 64
        let s = try CLI.run(["score", "--model", try XCTUnwrap(Self.run).path, "--file", Self.heldOut.path,
                             "--context", "\(context)", "--json"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let score = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as? [String: Any])
        let ours = try XCTUnwrap(score["ppl"] as? Double)
        // Far below a uniform guess (49,152) and far above a memorised text: the draft learned, a little.
        XCTAssertLessThan(ours, 5000, "the draft did not learn, so the comparison would be weak")
        let chunks = try XCTUnwrap(score["chunks"] as? Int)
        for (type, tolerance) in [("f32", 0.005), ("q8_0", 0.02)] {
            let r = try llamaTool(bin.appendingPathComponent("llama-perplexity"),
                                  ["-m", try XCTUnwrap(Self.gguf[type]).path, "-f", Self.heldOut.path, "-c", "\(context)",
                                   "-b", "\(context)", "-t", "2"]) { perplexityEstimate($0, chunks: chunks) != nil }
            XCTAssertEqual(r.status, 0, r.stderr.suffix(2000).description)
            let theirs = try XCTUnwrap(perplexityEstimate(r, chunks: chunks), "no estimate after \(chunks) chunks: \(r.stdout.suffix(300))")
            XCTAssertEqual(theirs, ours, accuracy: ours * tolerance, "\(type): llama-perplexity \(theirs), swiftdraft score \(ours)")
            print("perplexity \(type): llama-perplexity \(theirs), swiftdraft score (checkpoint) \(ours)")
        }
    }

    func testLlamaSpeculativeWithTheExportedDraft() throws {
        let bin = try llamaBin()
        let prompt = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
        let tokens = 24
        let spec = try llamaTool(bin.appendingPathComponent("llama-speculative"),
                                 ["-m", Self.target.path, "-md", try XCTUnwrap(Self.gguf["q8_0"]).path, "-p", prompt,
                                  "-n", "\(tokens)", "--temp", "0", "--spec-draft-n-max", "3", "-t", "2", "-c", "256"]) {
            self.number(after: "accept    =", in: $0.stderr) != nil && !$0.stdout.isEmpty
        }
        XCTAssertEqual(spec.status, 0, spec.stderr.suffix(2000).description)
        let acceptance = try XCTUnwrap(number(after: "accept    =", in: spec.stderr), "no acceptance line")
        let drafted = try XCTUnwrap(number(after: "n_drafted =", in: spec.stderr))
        XCTAssertGreaterThan(drafted, 0, "the draft proposed nothing")
        print("llama-speculative, SmolLM2 target with the exported q8_0 draft: accept \(acceptance)% of \(Int(drafted)) drafted")
        let plain = try CLI.run(["-m", Self.target.path, "-n", "\(tokens)", prompt], executable: bin.appendingPathComponent("llama-simple"))
        XCTAssertEqual(plain.status, 0, plain.stderr.suffix(2000).description)
        let speculative = spec.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let greedy = plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // llama-speculative may emit a token past -n (the round's bonus), so the greedy text must be its prefix.
        XCTAssertGreaterThan(greedy.count, prompt.count + 40, greedy)
        XCTAssertTrue(speculative.hasPrefix(greedy), "speculative:\n\(speculative)\ngreedy:\n\(greedy)")
    }

    /// `generate`'s refusals of what it cannot serve as asked: exit 2, one line naming the model, the prompt or the
    /// setting and what was expected (a trained draft has no chat template, and a context of 128 tokens).
    func testGenerateRefusesChatWithoutTemplateTooLongPromptAndUnknownMode() throws {
        let model = try XCTUnwrap(Self.run).path
        let chat = try CLI.run(["generate", "--model", model, "--chat", "--prompt", "What is the capital of France?"])
        XCTAssertEqual(chat.status, 2, chat.stderr)
        XCTAssertEqual(chat.stderr.split(separator: "\n").count, 1, chat.stderr)
        XCTAssertTrue(chat.stderr.contains(model) && chat.stderr.contains("no chat template"), chat.stderr)
        let long = String(repeating: "Emma Woodhouse, handsome, clever, and rich. ", count: 40)
        let tooLong = try CLI.run(["generate", "--model", model, "--prompt", long, "--max-new-tokens", "4"])
        XCTAssertEqual(tooLong.status, 2, tooLong.stderr)
        XCTAssertEqual(tooLong.stderr.split(separator: "\n").count, 1, tooLong.stderr)
        XCTAssertTrue(tooLong.stderr.contains("longer than the model's context of 128"), tooLong.stderr)
        XCTAssertTrue(chat.stdout.isEmpty && tooLong.stdout.isEmpty)
        // A quantized-activation mode that does not exist is refused, not silently replaced by the default.
        let mode = try CLI.run(["generate", "--model", model, "--prompt", "Emma", "--max-new-tokens", "2"],
                               environment: ["SWIFTDRAFT_QUANT_ACTIVATIONS": "int4"])
        XCTAssertEqual(mode.status, 2, mode.stderr)
        XCTAssertEqual(mode.stderr.split(separator: "\n").count, 1, mode.stderr)
        XCTAssertTrue(mode.stderr.contains("SWIFTDRAFT_QUANT_ACTIVATIONS=int4: expected exact, int16, int8"), mode.stderr)
    }

    func testGenerateFromEachExportIsTheCheckpoints() throws {
        func greedy(_ model: URL) throws -> [Int] {
            let r = try CLI.run(["generate", "--model", model.path, "--prompt", "Emma Woodhouse, handsome, clever, and rich,",
                                 "--max-new-tokens", "16", "--temperature", "0", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").first)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try XCTUnwrap(object["output_ids"] as? [Int])
        }
        let reference = try greedy(try XCTUnwrap(Self.run))
        XCTAssertEqual(reference.count, 16)
        XCTAssertEqual(try greedy(try XCTUnwrap(Self.hf)), reference, "generate --model <hf export>")
        XCTAssertEqual(try greedy(try XCTUnwrap(Self.gguf["f32"])), reference, "generate --model <f32 gguf export>")
        // A weak draft's greedy text barely depends on attention (a GGUF with q rows left unpermuted still gives these
        // ids), so each loaded export's mean NLL must also be the checkpoint's.
        func nll(_ model: URL) throws -> Double {
            let r = try CLI.run(["score", "--model", model.path, "--file", Self.heldOut.path, "--context", "64", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            return try XCTUnwrap(object["nll"] as? Double)
        }
        let checkpointNLL = try nll(Self.run)
        XCTAssertEqual(try nll(Self.hf), checkpointNLL, accuracy: 1e-5, "score --model <hf export>")
        XCTAssertEqual(try nll(try XCTUnwrap(Self.gguf["f32"])), checkpointNLL, accuracy: 1e-5, "score --model <f32 gguf export>")
    }

    /// `speculate --draft-dtype q8_0` on the checkpoint decodes the very rows the Q8_0 GGUF export holds: the
    /// engine's logits over a prompt are the GGUF's bit for bit, and speculation with either (sampled, so every
    /// draft probability enters) proposes, accepts and emits the same tokens.
    func testQuantizedAtLoadIsTheQ8_0Export() throws {
        let device = CPUDevice()
        let checkpoint = try loadModel(try XCTUnwrap(Self.run).path, device: device)
        let atLoad = try checkpoint.quantized(to: .q8_0, device: device)
        let exported = try loadModel(try XCTUnwrap(Self.gguf["q8_0"]).path, device: device)
        XCTAssertEqual(atLoad.weightBytes, exported.weightBytes, "the same matrices, as many bytes")
        let prompt = checkpoint.tokenizer.encode("Emma Woodhouse, handsome, clever, and rich, with a comfortable home")
        func logits(_ model: LoadedModel) throws -> [Float] {
            let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
            let cache = try KVCache(device: device, layers: model.config.layers, slotCount: 1, capacity: prompt.count,
                                    kvHeads: model.config.kvHeads, headDim: model.config.headDim)
            let out = try engine.forward([SequenceChunk(slot: 0, tokens: prompt, start: 0)], cache: cache, select: .allRows)
            return (0..<out.rowCount).flatMap { Array(out.row($0)) }
        }
        let quantized = try logits(atLoad), reference = try logits(exported), fp32 = try logits(checkpoint)
        XCTAssertEqual(quantized, reference, "Q8_0 at load vs the Q8_0 GGUF export")
        XCTAssertNotEqual(quantized, fp32, "the weights were quantized")

        let prompts = Self.work.appendingPathComponent("speculate-prompts.jsonl")
        try """
            {"id": "emma", "set": "text", "prompt": "Emma Woodhouse, handsome, clever, and rich,"}
            {"id": "code", "set": "code", "prompt": "def fibonacci(n):"}
            """.write(to: prompts, atomically: true, encoding: .utf8)
        func speculate(_ draft: URL, _ extra: [String]) throws -> [[String: Any]] {
            let r = try CLI.run(["speculate", "--target", Self.target.path, "--draft", draft.path, "--prompts", prompts.path,
                                 "--max-new-tokens", "24", "--seed", "3", "--json"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            return try XCTUnwrap(object["prompts"] as? [[String: Any]])
        }
        let viaLoad = try speculate(try XCTUnwrap(Self.run), ["--draft-dtype", "q8_0"])
        let viaExport = try speculate(try XCTUnwrap(Self.gguf["q8_0"]), [])
        for (a, b) in zip(viaLoad, viaExport) {
            XCTAssertEqual(a["output_ids"] as? [Int], b["output_ids"] as? [Int])
            XCTAssertEqual(a["accepted"] as? Int, b["accepted"] as? Int)
            XCTAssertEqual(a["proposed"] as? Int, b["proposed"] as? Int)
        }
        let bad = try CLI.run(["speculate", "--target", Self.target.path, "--draft", try XCTUnwrap(Self.gguf["q8_0"]).path,
                               "--prompts", prompts.path, "--draft-dtype", "q8_0"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("already quantized"), bad.stderr)
    }

    /// `speculate --draft-head-vocab K --draft-head-vocab-source D` gives a full-head draft a subset head at load
    /// (FR-Spec, no retraining): the K most frequent targets of D's shards, whose logits are the full head's while
    /// every other id gets `-inf`; speculation with it runs, exact, and names the head; bad settings exit 2.
    func testSubsetHeadAtLoadScoresTheRankedIds() throws {
        let device = CPUDevice()
        let full = try loadModel(try XCTUnwrap(Self.run).path, device: device)
        let source = try DataSource(name: "emma", path: try XCTUnwrap(Self.data).path)
        let ids = HeadVocabulary.rank(shards: source.train, masks: source.trainMasks, k: 64, vocab: full.config.vocabSize)
        XCTAssertEqual(ids.count, 64)
        for model in [full, try full.quantized(to: .q8_0, device: device)] {
            let subset = try model.withSubsetHead(ids)
            let prompt = full.tokenizer.encode("Emma Woodhouse, handsome, clever, and rich,")
            func logits(_ m: LoadedModel) throws -> [[Float]] {
                let engine = try DecoderEngine(config: m.config, weights: m.weights, device: device)
                let cache = try KVCache(device: device, layers: m.config.layers, slotCount: 1, capacity: prompt.count,
                                        kvHeads: m.config.kvHeads, headDim: m.config.headDim)
                let out = try engine.forward([SequenceChunk(slot: 0, tokens: prompt, start: 0)], cache: cache, select: .allRows)
                return (0..<out.rowCount).map { Array(out.row($0)) }
            }
            let a = try logits(subset), b = try logits(model)
            let kept = Set(ids)
            for r in 0..<prompt.count {
                for id in 0..<full.config.vocabSize {
                    if kept.contains(Int32(id)) {
                        XCTAssertEqual(a[r][id], b[r][id], accuracy: 1e-5 * max(1, abs(b[r][id])), "\(model.source) row \(r) id \(id)")
                    } else if a[r][id] != -.infinity {
                        return XCTFail("\(model.source): row \(r), id \(id) outside the subset has logit \(a[r][id])")
                    }
                }
            }
            XCTAssertThrowsError(try subset.withSubsetHead(ids), "a second subset head")
        }

        let prompts = Self.work.appendingPathComponent("subset-prompts.jsonl")
        try #"{"id": "emma", "set": "text", "prompt": "Emma Woodhouse, handsome, clever, and rich,"}"#.write(
            to: prompts, atomically: true, encoding: .utf8)
        let base = ["speculate", "--target", Self.target.path, "--draft", try XCTUnwrap(Self.run).path, "--prompts",
                    prompts.path, "--max-new-tokens", "16", "--temperature", "0", "--json"]
        let r = try CLI.run(base + ["--draft-head-vocab", "64", "--draft-head-vocab-source", Self.data.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertTrue((object["draft"] as? String ?? "").contains("head over 64 ids"), "\(object["draft"] ?? "")")
        let only = try XCTUnwrap((object["prompts"] as? [[String: Any]])?.first)
        XCTAssertEqual(only["output_ids"] as? [Int], only["plain_output_ids"] as? [Int], "greedy speculation is the target's")
        for (extra, expected) in [(["--draft-head-vocab", "64"], "go together"),
                                  (["--draft-head-vocab", "49152", "--draft-head-vocab-source", Self.data.path], "expected 1 to 49151"),
                                  (["--draft-head-vocab", "8", "--draft-head-vocab-source", "/nonexistent"], "/nonexistent")] {
            let bad = try CLI.run(base + extra)
            XCTAssertEqual(bad.status, 2, "\(extra): \(bad.stderr)")
            XCTAssertTrue(bad.stderr.contains(expected), "\(extra): \(bad.stderr)")
        }
    }

    /// A run started from an export evaluates its first batch with the checkpoint's weights, so its step-1 loss is the
    /// one a run started from the checkpoint itself gets, and far below a fresh run's.
    func testInitFromAnExportContinuesWithTheCheckpointsLoss() throws {
        func firstLoss(_ initFrom: String?, _ name: String) throws -> Double {
            let dir = Self.work.appendingPathComponent(name)
            let r = try CLI.run(["train", "--config", Self.config.path, "--run-dir", dir.path, "--max-steps", "1", "--quiet"]
                                + (initFrom.map { ["--init-from", $0] } ?? []))
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(try stepLosses(dir)[1], "\(name): no step-1 loss")
        }
        let checkpointFile = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: Self.run.appendingPathComponent("checkpoints").path)
            .filter { $0.hasSuffix(".h5") }.sorted().last)
        let fromCheckpoint = try firstLoss(Self.run.appendingPathComponent("checkpoints/\(checkpointFile)").path, "from-h5")
        let fromHF = try firstLoss(Self.hf.path, "from-hf")
        let fromGGUF = try firstLoss(try XCTUnwrap(Self.gguf["f32"]).path, "from-gguf")
        let fresh = try firstLoss(nil, "fresh")
        XCTAssertEqual(fromHF, fromCheckpoint, accuracy: 1e-6)
        XCTAssertEqual(fromGGUF, fromCheckpoint, accuracy: 1e-6)
        XCTAssertLessThan(fromCheckpoint, fresh - 1, "fresh \(fresh): the trained weights were not used")
        print("step-1 loss: from checkpoint \(fromCheckpoint), from hf \(fromHF), from gguf \(fromGGUF), fresh \(fresh)")
    }

    func testInitFromAMisshapenModelNamesTheTensor() throws {
        let narrow = Self.work.appendingPathComponent("narrow.yaml")
        let text = try String(contentsOf: Self.config, encoding: .utf8).replacingOccurrences(of: "ffn_dim: 128", with: "ffn_dim: 96")
        try text.write(to: narrow, atomically: true, encoding: .utf8)
        for (source, tensor) in [(Self.hf!, "model.layers.0.mlp.gate_proj.weight"), (Self.gguf["f32"]!, "blk.0.ffn_gate.weight")] {
            let dir = Self.work.appendingPathComponent("narrow-\(source.lastPathComponent)")
            let r = try CLI.run(["train", "--config", narrow.path, "--run-dir", dir.path, "--max-steps", "1", "--quiet",
                                 "--init-from", source.path])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(tensor), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "a refused run left \(dir.path)")
        }
    }
}
