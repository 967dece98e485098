// The mapping between a `TrainingState` and the HDF5 layout of DESIGN.md ("Checkpoint (HDF5)"): which attribute
// and dataset holds what, and the checks that a file fits the model it is loaded into.
import DraftModel
import Foundation
import Yams

/// Encodes a `TrainingState` into a checkpoint and decodes it back, validating against the model it must fit.
///
/// Layout (format_version 2): root attributes `step`, `tokens_seen`, `stage`, `stage_index`, `world_size`,
/// `config_yaml`, `tokenizer_sha256`, `consecutive_bad_steps`, `model_config` (JSON of `ModelConfig`), `tokenizer`;
/// `/model/<HF name>` per parameter tensor; `/optimizer/<HF name>.exp_avg` and `.exp_avg_sq` with `/optimizer@step`,
/// `@beta1`, `@beta2`; `/data/cursor` with `/data@sources`; `/rng/seed`; with `model_config.head_vocab`,
/// `/data/head_ids` (int64, ascending: the ids the subset head scores, ranked on the data at the run's start, so
/// it lives with the other data-derived state and `/model` keeps only Hugging Face tensors). Version 1 files lack `model_config` and
/// `tokenizer`; both are then read from the `model:` and `tokenizer:` keys of `config_yaml`.
public enum CheckpointCodec {
    /// Root attribute names, as DESIGN.md and users' scripts spell them.
    public enum Key {
        public static let step = "step"
        public static let tokensSeen = "tokens_seen"
        public static let stage = "stage"
        public static let stageIndex = "stage_index"
        public static let worldSize = "world_size"
        public static let configYAML = "config_yaml"
        public static let tokenizerFingerprint = "tokenizer_sha256"
        public static let consecutiveBadSteps = "consecutive_bad_steps"
        /// Since format_version 2.
        public static let modelConfig = "model_config"
        /// Since format_version 2.
        public static let tokenizer = "tokenizer"
    }

    /// The `/data` dataset holding a subset head's ids.
    public static let headIDsDataset = "head_ids"

    /// Suffixes of the two AdamW moment datasets of a parameter in `/optimizer`.
    public static let momentSuffixes = (first: ".exp_avg", second: ".exp_avg_sq")

    /// Datasets a save writes (parameters, then both moments of each): where the crash-test pause goes halfway.
    public static func tensorCount(of state: TrainingState) -> Int {
        ParameterLayout(state.modelConfig).slots.count * (state.optimizer == nil ? 1 : 3)
    }

    // MARK: Encode

    /// Writes `state` into `writer` (attributes, `/model`, `/optimizer`, `/data`, `/rng`), each tensor straight from
    /// the state's buffers.
    public static func encode(_ state: TrainingState, into writer: inout CheckpointWriter) throws {
        let layout = ParameterLayout(state.modelConfig)
        let path = writer.url.path
        try checkCount(state.parameters.count, layout, "parameters", path)
        if let optimizer = state.optimizer {
            try checkCount(optimizer.expAvg.count, layout, "first moments", path)
            try checkCount(optimizer.expAvgSq.count, layout, "second moments", path)
        }
        try writer.setAttributes([
            Key.step: .int(Int64(state.step)),
            Key.tokensSeen: .int(Int64(state.tokensSeen)),
            Key.stage: .string(state.stageName),
            Key.stageIndex: .int(Int64(state.stageIndex)),
            Key.worldSize: .int(Int64(state.worldSize)),
            Key.configYAML: .string(state.configYAML),
            Key.tokenizerFingerprint: .string(state.tokenizerFingerprint),
            Key.consecutiveBadSteps: .int(Int64(state.consecutiveBadSteps)),
            Key.modelConfig: .string(try modelConfigJSON(state.modelConfig)),
            Key.tokenizer: .string(state.tokenizer),
        ])
        func write(_ values: [Float], suffix: String, to group: CheckpointGroup, _ slot: TensorSlot) throws {
            try values.withUnsafeBufferPointer { all in
                let slice = UnsafeBufferPointer(rebasing: all[slot.offset..<(slot.offset + slot.count)])
                try writer.write(TensorSource(name: slot.name + suffix, shape: slot.shape, values: slice), to: group)
            }
        }
        for slot in layout.slots { try write(state.parameters, suffix: "", to: .model, slot) }
        if let optimizer = state.optimizer {
            for slot in layout.slots {
                try write(optimizer.expAvg, suffix: momentSuffixes.first, to: .optimizer, slot)
                try write(optimizer.expAvgSq, suffix: momentSuffixes.second, to: .optimizer, slot)
            }
            try writer.setAttributes([
                "step": .int(Int64(optimizer.step)),
                "beta1": .double(optimizer.beta1),
                "beta2": .double(optimizer.beta2),
            ], in: .optimizer)
        }
        try writer.writeInt64s("cursor", state.cursor, to: .data)
        try writer.setAttribute("sources", .string(state.sourceNames.joined(separator: ",")), in: .data)
        if let ids = state.headIDs {
            try writer.writeInt64s(headIDsDataset, ids.map(Int64.init), to: .data)
        }
        // Data order and initialisation derive from the seed alone; no generator state runs on.
        try writer.writeInt64s("seed", [Int64(bitPattern: state.seed)], to: .rng)
    }

    // MARK: Decode

    /// The whole state, every tensor checksum-verified, checked against `layout` (the model it will be loaded into;
    /// `describing` names that model in errors, e.g. "the config's model"). Missing or extra tensors, a wrong shape
    /// or missing moments are errors naming the tensor.
    public static func decode(_ reader: CheckpointReader, expecting layout: ParameterLayout,
                              describing model: String = "the config's model") throws -> TrainingState {
        var state = try decodeModel(reader, expecting: layout, describing: model)
        let path = reader.url.path
        var m = [Float](repeating: 0, count: layout.count), v = m
        for slot in layout.slots {
            for (suffix, isFirst) in [(momentSuffixes.first, true), (momentSuffixes.second, false)] {
                let name = slot.name + suffix
                guard let info = reader.dataset(name, in: .optimizer), info.shape == slot.shape else {
                    throw CheckpointError(path: path, reason: "expected tensor /optimizer/\(name) of shape \(slot.shape)")
                }
                func read(into all: inout [Float]) throws {
                    try all.withUnsafeMutableBufferPointer {
                        try reader.read(info, into: UnsafeMutableBufferPointer(rebasing: $0[slot.offset..<(slot.offset + slot.count)]))
                    }
                }
                if isFirst { try read(into: &m) } else { try read(into: &v) }
            }
        }
        let betas = reader.groupAttributes[.optimizer] ?? [:]
        state.optimizer = OptimizerState(expAvg: m, expAvgSq: v, step: Int(try reader.int("step", in: .optimizer)),
                                         beta1: double(betas["beta1"]) ?? 0.9, beta2: double(betas["beta2"]) ?? 0.95)
        state.cursor = try reader.readInt64s("cursor", in: .data)
        let seed = try reader.readInt64s("seed", in: .rng)
        guard seed.count == 1 else {
            throw CheckpointError(path: path, reason: "expected /rng/seed to hold 1 value, it holds \(seed.count)")
        }
        state.seed = UInt64(bitPattern: seed[0])
        return state
    }

    /// The model part only (`/model` and the root attributes; `/optimizer`, `/data` and `/rng` are not read), for
    /// inference and export. With `layout` nil the model is checked against the checkpoint's own `model_config`.
    public static func decodeModel(_ reader: CheckpointReader, expecting layout: ParameterLayout? = nil,
                                   describing model: String? = nil) throws -> TrainingState {
        let path = reader.url.path
        let config = try modelConfig(of: reader)
        let layout = layout ?? ParameterLayout(config)
        let model = model ?? "its \(reader.formatVersion >= 2 ? Key.modelConfig : "config_yaml model section")"
        var parameters = [Float](repeating: 0, count: layout.count)
        for slot in layout.slots {
            guard let info = reader.dataset(slot.name, in: .model) else {
                throw CheckpointError(path: path, reason: "expected tensor /model/\(slot.name) for \(model), not found")
            }
            guard info.shape == slot.shape else {
                throw CheckpointError(path: path, reason: "tensor /model/\(slot.name) has shape \(info.shape), "
                                      + "\(model) expects \(slot.shape)")
            }
            try parameters.withUnsafeMutableBufferPointer { all in
                try reader.read(info, into: UnsafeMutableBufferPointer(rebasing: all[slot.offset..<(slot.offset + slot.count)]))
            }
        }
        let expected = Set(layout.slots.map(\.name))
        if let extra = reader.datasets.first(where: { $0.group == .model && !expected.contains($0.name) }) {
            throw CheckpointError(path: path, reason: "holds tensor \(extra.path), which \(model) does not have")
        }
        let sources = (try? reader.string("sources", in: .data)) ?? ""
        let headIDs = try self.headIDs(of: reader, config: config)
        return TrainingState(
            modelConfig: config, parameters: parameters, optimizer: nil, cursor: [],
            sourceNames: sources.isEmpty ? [] : sources.split(separator: ",").map(String.init), seed: 0,
            step: Int(try reader.int(Key.step)), tokensSeen: Int(try reader.int(Key.tokensSeen)),
            stageName: try reader.string(Key.stage), stageIndex: Int(try reader.int(Key.stageIndex)),
            worldSize: Int(try reader.int(Key.worldSize)), configYAML: try reader.string(Key.configYAML),
            tokenizer: try tokenizer(of: reader), tokenizerFingerprint: try reader.string(Key.tokenizerFingerprint),
            consecutiveBadSteps: Int((try? reader.int(Key.consecutiveBadSteps)) ?? 0), headIDs: headIDs)
    }

    /// `/data/head_ids`, which must be there exactly when the model has `head_vocab`: that many strictly ascending
    /// ids below `vocab_size`.
    static func headIDs(of reader: CheckpointReader, config: ModelConfig) throws -> [Int32]? {
        let path = reader.url.path, name = "/data/\(headIDsDataset)"
        guard let k = config.headVocab else {
            if reader.dataset(headIDsDataset, in: .data) != nil {
                throw CheckpointError(path: path, reason: "holds \(name) but its model_config has no head_vocab")
            }
            return nil
        }
        guard reader.dataset(headIDsDataset, in: .data) != nil else {
            throw CheckpointError(path: path, reason: "expected \(name) for model_config.head_vocab \(k), not found")
        }
        let ids = try reader.readInt64s(headIDsDataset, in: .data)
        guard ids.count == k else {
            throw CheckpointError(path: path, reason: "\(name) holds \(ids.count) ids, model_config.head_vocab is \(k)")
        }
        for (i, id) in ids.enumerated() where id < 0 || id >= config.vocabSize || (i > 0 && id <= ids[i - 1]) {
            throw CheckpointError(path: path, reason: "\(name)[\(i)] is \(id), expected strictly ascending ids below vocab_size \(config.vocabSize)")
        }
        return ids.map { Int32($0) }
    }

    /// The model's shape: `model_config` (version 2 on), or the `model:` section of `config_yaml` (version 1).
    /// A shape no model can have is an error naming the key.
    public static func modelConfig(of reader: CheckpointReader) throws -> ModelConfig {
        let path = reader.url.path
        let config: ModelConfig
        let source: String
        if reader.formatVersion >= 2 {
            source = Key.modelConfig
            let json = try reader.string(Key.modelConfig)
            do {
                config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
            } catch {
                throw CheckpointError(path: path, reason: "expected attribute model_config to be a JSON model config "
                                      + "(\(decodingProblem(error)))")
            }
        } else {
            source = "config_yaml model"
            config = try legacyConfig(of: reader).model
        }
        if let problem = config.firstProblem() {
            throw CheckpointError(path: path, reason: "\(source).\(problem.key): expected \(problem.expected)")
        }
        return config
    }

    /// The tokenizer spec the run used: `tokenizer` (version 2 on), or the `tokenizer:` key of `config_yaml`.
    public static func tokenizer(of reader: CheckpointReader) throws -> String {
        if reader.formatVersion >= 2 { return try reader.string(Key.tokenizer) }
        guard let tokenizer = try legacyConfig(of: reader).tokenizer else {
            throw CheckpointError(path: reader.url.path, reason: "expected a tokenizer key in attribute config_yaml")
        }
        return tokenizer
    }

    // MARK: Helpers

    /// JSON with sorted snake_case keys, one line: readable in `inspect` and by `json.loads`.
    static func modelConfigJSON(_ config: ModelConfig) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(config), as: UTF8.self)
    }

    /// The two keys of a version 1 file's resolved config that inference needs; every other key is ignored, so the
    /// training config's schema can change without breaking old checkpoints.
    private struct LegacyConfig: Decodable {
        var model: ModelConfig
        var tokenizer: String?
    }

    private static func legacyConfig(of reader: CheckpointReader) throws -> LegacyConfig {
        let yaml = try reader.string(Key.configYAML)
        do {
            return try YAMLDecoder().decode(LegacyConfig.self, from: yaml)
        } catch {
            throw CheckpointError(path: reader.url.path, reason: "expected attribute config_yaml to hold a model section "
                                  + "(\(decodingProblem(error)))")
        }
    }

    private static func checkCount(_ count: Int, _ layout: ParameterLayout, _ what: String, _ path: String) throws {
        guard count == layout.count else {
            throw CheckpointError(path: path, reason: "expected \(layout.count) \(what) for the model, got \(count)")
        }
    }

    private static func double(_ value: CheckpointAttribute?) -> Double? {
        if case .double(let d)? = value { return d }
        return nil
    }
}

/// One line for a decoding failure: the key path and what was wrong, not Foundation's multi-line dump.
func decodingProblem(_ error: Error) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map(\.stringValue).joined(separator: ".")
        return keys.isEmpty ? context.debugDescription : "\(keys): \(context.debugDescription)"
    }
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        let parent = context.codingPath.map(\.stringValue).joined(separator: ".")
        return "missing key \(parent.isEmpty ? "" : parent + ".")\(key.stringValue)"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
         DecodingError.dataCorrupted(let context):
        return path(context)
    default:
        return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
    }
}
