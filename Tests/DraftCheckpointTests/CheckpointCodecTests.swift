// The codec: a training state survives the file bit for bit, versions are checked, old files still load, and the
// one-call model load refuses what does not fit.
import DraftCheckpoint
import DraftDevice
import DraftErrors
import DraftModel
import Foundation
import XCTest

/// A small untied GQA model (so `lm_head.weight` is its own tensor) and a state with random bit patterns in every
/// buffer, NaN payloads and subnormals included.
private func sampleState(step: Int = 37, seed: UInt64 = 7, optimizer: Bool = true) -> TrainingState {
    let config = ModelConfig(vocabSize: 48, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffnDim: 24, maxSeqLen: 16,
                             ropeTheta: 500_000, normEps: 1e-6, tieEmbeddings: false)
    let count = ParameterLayout(config).count
    var generator = SplitMix(state: seed)
    func buffer() -> [Float] { (0..<count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())) } }
    return TrainingState(
        modelConfig: config, parameters: buffer(),
        optimizer: optimizer ? OptimizerState(expAvg: buffer(), expAvgSq: buffer(), step: step, beta1: 0.9, beta2: 0.95) : nil,
        cursor: [1, 96, 40, 56], sourceNames: ["code", "text"], seed: 0xDEAD_BEEF_0123_4567, step: step,
        tokensSeen: step * 4096, stageName: "code", stageIndex: 1, worldSize: 8,
        configYAML: "run: {name: codec, seed: 1}\n", tokenizer: "/models/smollm2/tokenizer.json",
        tokenizerFingerprint: String(repeating: "cd", count: 32), consecutiveBadSteps: 2)
}

@discardableResult
private func save(_ state: TrainingState, to directory: URL,
                  patch: ((inout CheckpointWriter) throws -> Void)? = nil) throws -> URL {
    let store = CheckpointStore(directory: directory, keepLast: 0)
    return try store.save(step: state.step) { writer in
        try CheckpointCodec.encode(state, into: &writer)
        try patch?(&writer)
    }.url
}

/// Logits of `model` on a fixed batch of two sequences.
private func logits(_ model: LlamaModel) throws -> [Float] {
    let tokens = (0..<16).map { Int32(($0 * 7 + 3) % model.config.vocabSize) }
    return try model.logits(tokens: tokens, batch: 2, seqLen: 8)
}

final class CheckpointCodecTests: XCTestCase {
    func testStateRoundTripsBitExactly() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = sampleState()
        let url = try save(state, to: dir)
        let reader = try CheckpointReader(url: url)
        XCTAssertEqual(reader.formatVersion, CheckpointFormat.version)
        XCTAssertEqual(CheckpointFormat.version, 2)
        // DESIGN.md's names, plus the two of version 2.
        for name in ["format", "format_version", "step", "tokens_seen", "stage", "world_size", "config_yaml",
                     "tokenizer_sha256", "model_config", "tokenizer"] {
            XCTAssertNotNil(reader.attributes[name], name)
        }
        let layout = ParameterLayout(state.modelConfig)
        XCTAssertEqual(reader.tensors.filter { $0.group == .model }.map(\.name), layout.slots.map(\.name))
        XCTAssertTrue(layout.slots.map(\.name).contains("lm_head.weight"))
        XCTAssertEqual(reader.tensors.filter { $0.group == .optimizer }.count, 2 * layout.slots.count)
        XCTAssertEqual(CheckpointCodec.tensorCount(of: state), 3 * layout.slots.count)

        let back = try CheckpointCodec.decode(reader, expecting: layout)
        XCTAssertEqual(back.modelConfig, state.modelConfig)
        XCTAssertEqual(back.parameters.map(\.bitPattern), state.parameters.map(\.bitPattern))
        let moments = try XCTUnwrap(back.optimizer), expected = try XCTUnwrap(state.optimizer)
        XCTAssertEqual(moments.expAvg.map(\.bitPattern), expected.expAvg.map(\.bitPattern))
        XCTAssertEqual(moments.expAvgSq.map(\.bitPattern), expected.expAvgSq.map(\.bitPattern))
        XCTAssertEqual(moments.step, expected.step)
        XCTAssertEqual(moments.beta1, expected.beta1)
        XCTAssertEqual(moments.beta2, expected.beta2)
        XCTAssertEqual(back.cursor, state.cursor)
        XCTAssertEqual(back.sourceNames, state.sourceNames)
        XCTAssertEqual(back.seed, state.seed)
        XCTAssertEqual(back.step, state.step)
        XCTAssertEqual(back.tokensSeen, state.tokensSeen)
        XCTAssertEqual(back.stageName, state.stageName)
        XCTAssertEqual(back.stageIndex, state.stageIndex)
        XCTAssertEqual(back.worldSize, state.worldSize)
        XCTAssertEqual(back.configYAML, state.configYAML)
        XCTAssertEqual(back.tokenizer, state.tokenizer)
        XCTAssertEqual(back.tokenizerFingerprint, state.tokenizerFingerprint)
        XCTAssertEqual(back.consecutiveBadSteps, state.consecutiveBadSteps)

        // The model part alone needs no layout from outside and reads no optimizer state.
        let model = try CheckpointCodec.decodeModel(reader)
        XCTAssertNil(model.optimizer)
        XCTAssertEqual(model.parameters.map(\.bitPattern), state.parameters.map(\.bitPattern))
        XCTAssertTrue(inspectCheckpoint(url).ok)
    }

    func testOneCallLoadFromFileAndDirectories() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Finite parameters this time: the loaded model must compute the same logits as one built in memory.
        let config = ModelConfig(vocabSize: 40, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffnDim: 32, maxSeqLen: 16)
        let device = CPUDevice(threads: 1)
        let reference = try LlamaModel(config: config, device: device)
        try reference.initializeParameters(seed: 5)
        var state = sampleState(optimizer: false)
        state.modelConfig = config
        state.parameters = try reference.readParameters()
        let checkpoints = dir.appendingPathComponent("checkpoints")
        state.step = 10
        try save(state, to: checkpoints)
        state.step = 20
        let newest = try save(state, to: checkpoints)

        for path in [newest.path, dir.path, checkpoints.path] {
            let loaded = try loadModelCheckpoint(path: path, device: device)
            XCTAssertEqual(loaded.url.path, newest.path, path)
            XCTAssertEqual(loaded.step, 20)
            XCTAssertEqual(loaded.stage, "code")
            XCTAssertEqual(loaded.stageIndex, 1)
            XCTAssertEqual(loaded.config, config)
            XCTAssertEqual(loaded.tokenizer, state.tokenizer)
            XCTAssertEqual(loaded.tokenizerFingerprint, state.tokenizerFingerprint)
            XCTAssertEqual(loaded.formatVersion, CheckpointFormat.version)
            XCTAssertEqual(try loaded.model.readParameters().map(\.bitPattern), state.parameters.map(\.bitPattern))
            XCTAssertEqual(try logits(loaded.model), try logits(reference))
        }
        // `latest` wins over the highest step; without `latest`, the highest step.
        try Data("step-00000010.h5\n".utf8).write(to: checkpoints.appendingPathComponent("latest"))
        XCTAssertEqual(try loadModelCheckpoint(path: dir.path, device: device).step, 10)
        try FileManager.default.removeItem(at: checkpoints.appendingPathComponent("latest"))
        XCTAssertEqual(try loadModelCheckpoint(path: dir.path, device: device).step, 20)
    }

    func testNewerFormatVersionIsRefusedNamingBothVersions() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let newer = CheckpointFormat.version + 1
        let url = try save(sampleState(), to: dir) { try $0.setAttribute("format_version", .int(newer)) }
        let expected = "written by format_version \(newer), this build reads up to \(CheckpointFormat.version)"
        var messages: [String] = []
        XCTAssertThrowsError(try CheckpointReader(url: url)) { error in
            XCTAssertTrue(error is BadInputError, "\(type(of: error))")
            messages.append("\(error)")
        }
        XCTAssertThrowsError(try loadModelCheckpoint(path: url.path, device: CPUDevice(threads: 1))) { messages.append("\($0)") }
        XCTAssertThrowsError(try loadModelCheckpoint(path: dir.path, device: CPUDevice(threads: 1))) { messages.append("\($0)") }
        XCTAssertEqual(messages.count, 3)
        for message in messages {
            XCTAssertTrue(message.contains(expected), message)
            XCTAssertTrue(message.contains(url.path), message)
            XCTAssertFalse(message.contains("\n"), message)
        }
        // Resume skips it with a warning that says why; inspect calls it bad.
        let (found, warnings) = try CheckpointStore(directory: dir, keepLast: 0).newestValid()
        XCTAssertNil(found)
        XCTAssertEqual(warnings.count, 1, "\(warnings)")
        XCTAssertTrue(warnings.first?.contains(expected) == true, "\(warnings)")
        let (report, ok) = inspectCheckpoint(url)
        XCTAssertFalse(ok)
        XCTAssertTrue(report.contains(expected), report)

        // A version below the first one is refused too, and a file of this version opens.
        let old = try save(sampleState(step: 1), to: dir) { try $0.setAttribute("format_version", .int(0)) }
        XCTAssertThrowsError(try CheckpointReader(url: old)) { XCTAssertTrue("\($0)".contains("got 0"), "\($0)") }
    }

    /// A version 1 file, written the way the version 1 trainer wrote it (no `model_config`, no `tokenizer`): the
    /// model's shape and the tokenizer come from `config_yaml`, and it decodes in full.
    func testVersionOneFileLoads() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = ModelConfig(vocabSize: 40, dim: 16, layers: 1, heads: 2, kvHeads: 1, ffnDim: 32, maxSeqLen: 16,
                                 ropeTheta: 10_000, normEps: 1e-5, tieEmbeddings: true)
        let layout = ParameterLayout(config)
        let device = CPUDevice(threads: 1)
        let reference = try LlamaModel(config: config, device: device)
        try reference.initializeParameters(seed: 9)
        let parameters = try reference.readParameters()
        let moments = parameters.map { $0 * 0.5 }
        // The resolved YAML of a version 1 run, as the trainer's YAMLEncoder wrote it (other sections included).
        let yaml = """
            run:
              name: old
              seed: 3
            model:
              arch: llama
              vocab_size: 40
              dim: 16
              layers: 1
              heads: 2
              kv_heads: 1
              ffn_dim: 32
              max_seq_len: 16
              rope_theta: 10000.0
              norm_eps: 1e-05
              tie_embeddings: true
            tokenizer: bytes
            data:
              seq_len: 16
              sources:
                code:
                  path: /data/code
            schedule:
              global_batch_tokens: 512
              micro_batch: 2
              stages:
              - name: pretrain
                tokens: 40960
                mixture:
                  code: 1.0

            """
        let url = try CheckpointStore(directory: dir, keepLast: 0).save(step: 12) { writer in
            try writer.setAttribute("format_version", .int(1))
            try writer.setAttributes([
                "step": .int(12), "tokens_seen": .int(12 * 512), "stage": .string("pretrain"), "stage_index": .int(0),
                "world_size": .int(4), "config_yaml": .string(yaml), "tokenizer_sha256": .string("ab"),
                "consecutive_bad_steps": .int(0),
            ])
            try parameters.withUnsafeBufferPointer { p in
                try moments.withUnsafeBufferPointer { m in
                    for slot in layout.slots {
                        let slice = UnsafeBufferPointer(rebasing: p[slot.offset..<(slot.offset + slot.count)])
                        try writer.write(TensorSource(name: slot.name, shape: slot.shape, values: slice), to: .model)
                    }
                    for slot in layout.slots {
                        let slice = UnsafeBufferPointer(rebasing: m[slot.offset..<(slot.offset + slot.count)])
                        try writer.write(TensorSource(name: slot.name + ".exp_avg", shape: slot.shape, values: slice), to: .optimizer)
                        try writer.write(TensorSource(name: slot.name + ".exp_avg_sq", shape: slot.shape, values: slice), to: .optimizer)
                    }
                }
            }
            try writer.setAttributes(["step": .int(12), "beta1": .double(0.9), "beta2": .double(0.95)], in: .optimizer)
            try writer.writeInt64s("cursor", [0, 192, 192], to: .data)
            try writer.setAttribute("sources", .string("code"), in: .data)
            try writer.writeInt64s("seed", [3], to: .rng)
        }.url
        let reader = try CheckpointReader(url: url)
        XCTAssertEqual(reader.formatVersion, 1)
        XCTAssertNil(reader.attributes["model_config"])
        XCTAssertEqual(try CheckpointCodec.modelConfig(of: reader), config)
        XCTAssertEqual(try CheckpointCodec.tokenizer(of: reader), "bytes")
        let state = try CheckpointCodec.decode(reader, expecting: layout)
        XCTAssertEqual(state.parameters.map(\.bitPattern), parameters.map(\.bitPattern))
        XCTAssertEqual(state.optimizer?.expAvgSq.map(\.bitPattern), moments.map(\.bitPattern))
        XCTAssertEqual(state.optimizer?.step, 12)
        XCTAssertEqual(state.cursor, [0, 192, 192])
        XCTAssertEqual(state.sourceNames, ["code"])
        XCTAssertEqual(state.seed, 3)
        XCTAssertEqual(state.worldSize, 4)

        let loaded = try loadModelCheckpoint(path: dir.path, device: device)
        XCTAssertEqual(loaded.formatVersion, 1)
        XCTAssertEqual(loaded.tokenizer, "bytes")
        XCTAssertEqual(loaded.step, 12)
        XCTAssertEqual(try logits(loaded.model), try logits(reference))
    }

    func testLoadRefusesWhatDoesNotFitNamingIt() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let device = CPUDevice(threads: 1)
        let state = sampleState(optimizer: false)
        let layout = ParameterLayout(state.modelConfig)
        func refusal(_ path: String) -> String {
            var message = ""
            XCTAssertThrowsError(try loadModelCheckpoint(path: path, device: device)) { error in
                XCTAssertTrue(error is CheckpointError, "\(type(of: error)): \(error)")
                message = "\(error)"
            }
            XCTAssertFalse(message.contains("\n"), message)
            return message
        }

        // The model_config says 2 layers; a config with 1 layer wrote the tensors: layer 1 is missing.
        var fewer = state
        fewer.modelConfig.layers = 1
        fewer.parameters = Array(state.parameters.prefix(ParameterLayout(fewer.modelConfig).count))
        let missing = try save(fewer, to: dir.appendingPathComponent("missing")) {
            try $0.setAttribute("model_config", .string(#"{"vocab_size":48,"dim":16,"layers":2,"heads":4,"kv_heads":2,"ffn_dim":24,"max_seq_len":16,"tie_embeddings":false}"#))
        }
        XCTAssertTrue(refusal(missing.path).contains("/model/model.layers.1.input_layernorm.weight"))

        // A wider feed-forward than the tensors have: the first tensor of that shape is named, with both shapes.
        let wrong = try save(state, to: dir.appendingPathComponent("shape")) {
            try $0.setAttribute("model_config", .string(#"{"vocab_size":48,"dim":16,"layers":2,"heads":4,"kv_heads":2,"ffn_dim":32,"max_seq_len":16,"tie_embeddings":false}"#))
        }
        let shape = refusal(wrong.path)
        XCTAssertTrue(shape.contains("/model/model.layers.0.mlp.gate_proj.weight has shape [24, 16]"), shape)
        XCTAssertTrue(shape.contains("[32, 16]"), shape)

        // Tied in the config, untied in the tensors: lm_head.weight has no place.
        let extra = try save(state, to: dir.appendingPathComponent("extra")) {
            try $0.setAttribute("model_config", .string(#"{"vocab_size":48,"dim":16,"layers":2,"heads":4,"kv_heads":2,"ffn_dim":24,"max_seq_len":16,"tie_embeddings":true}"#))
        }
        XCTAssertTrue(refusal(extra.path).contains("/model/lm_head.weight"))

        // An impossible shape is named by key before any allocation; garbage JSON names the attribute.
        let impossible = try save(state, to: dir.appendingPathComponent("impossible")) {
            try $0.setAttribute("model_config", .string(#"{"vocab_size":48,"dim":16,"layers":2,"heads":3,"ffn_dim":24,"max_seq_len":16}"#))
        }
        XCTAssertTrue(refusal(impossible.path).contains("model_config.heads"))
        let garbage = try save(state, to: dir.appendingPathComponent("garbage")) {
            try $0.setAttribute("model_config", .string("{\"dim\": 16"))
        }
        XCTAssertTrue(refusal(garbage.path).contains("model_config"))

        // A damaged tensor fails its checksum (only /model is read, and it is verified).
        let damaged = try save(state, to: dir.appendingPathComponent("damaged"))
        var bytes = try Data(contentsOf: damaged)
        let norm = layout.finalNorm
        let needle = state.parameters[norm.offset..<(norm.offset + norm.count)].withUnsafeBytes { Data($0) }
        let range = try XCTUnwrap(bytes.range(of: needle))
        bytes[range.lowerBound + 5] ^= 0x01
        try bytes.write(to: damaged)
        let corrupt = refusal(damaged.path)
        XCTAssertTrue(corrupt.contains("/model/model.norm.weight") && corrupt.contains("checksum"), corrupt)

        // Nothing there, not a checkpoint, a run directory without checkpoints, a dangling `latest`.
        XCTAssertTrue(refusal(dir.appendingPathComponent("nothing.h5").path).contains("found nothing"))
        let text = dir.appendingPathComponent("notes.h5")
        try Data("hello".utf8).write(to: text)
        XCTAssertTrue(refusal(text.path).contains("expected an HDF5 file"))
        let emptyRun = dir.appendingPathComponent("empty-run")
        try FileManager.default.createDirectory(at: emptyRun.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        let empty = refusal(emptyRun.path)
        XCTAssertTrue(empty.contains(emptyRun.path) && empty.contains("found no checkpoint"), empty)
        let dangling = dir.appendingPathComponent("dangling")
        try save(state, to: dangling)
        try Data("step-00000099.h5\n".utf8).write(to: dangling.appendingPathComponent("latest"))
        XCTAssertTrue(refusal(dangling.path).contains("names step-00000099.h5"))
    }
}
