import DraftDevice
import DraftErrors
import DraftModel
import Foundation
import Yams

/// A run's configuration: the YAML file of DESIGN.md, with defaults filled in.
public struct TrainingConfig: Codable, Sendable {
    public struct Run: Codable, Sendable {
        public var name: String
        public var dir: String?
        public var seed: UInt64
        public var timeBudgetHours: Double
        enum CodingKeys: String, CodingKey { case name, dir, seed, timeBudgetHours = "time_budget_hours" }
    }

    public struct Source: Codable, Sendable {
        public var path: String
    }

    public struct DataSection: Codable, Sendable {
        public var seqLen: Int
        public var sources: [String: Source]
        enum CodingKeys: String, CodingKey { case sources, seqLen = "seq_len" }
    }

    public struct Stage: Codable, Sendable {
        public var name: String
        public var tokens: Double
        public var mixture: [String: Double]
        public var lrScale: Double?
        /// The stage's token loss (`ce` when absent).
        public var loss: StageLoss?
        enum CodingKeys: String, CodingKey { case name, tokens, mixture, loss, lrScale = "lr_scale" }
    }

    /// A stage's `loss: {kind, kd_weight}`: `ce` (cross-entropy on the data token, the default), `kl` or `tvd` (the
    /// divergence from the teacher's stored top-K plus one bucket for the rest of the mass), or `ce_kl`
    /// (`(1 - kd_weight) ce + kd_weight kl`, `kd_weight` 0.5 by default). Rows without a teacher row take `ce`.
    public struct StageLoss: Codable, Sendable, Equatable {
        public static let kinds = ["ce", "kl", "tvd", "ce_kl"]
        public static let defaultKDWeight = 0.5
        public var kind: String
        public var kdWeight: Double?
        enum CodingKeys: String, CodingKey { case kind, kdWeight = "kd_weight" }

        public init(kind: String, kdWeight: Double? = nil) {
            self.kind = kind
            self.kdWeight = kdWeight
        }

        /// What the model takes (the kind and weight already validated).
        public var tokenLoss: TokenLoss {
            switch kind {
            case "kl": return .distillation(.kl, kdWeight: 1)
            case "tvd": return .distillation(.tvd, kdWeight: 1)
            case "ce_kl": return .distillation(.kl, kdWeight: Float(kdWeight ?? Self.defaultKDWeight))
            default: return .crossEntropy
            }
        }

        /// Whether the loss needs the teacher's top-K.
        public var needsTeacher: Bool { tokenLoss != .crossEntropy }
    }

    public struct Schedule: Codable, Sendable {
        public var globalBatchTokens: Int
        public var microBatch: Int
        public var stages: [Stage]
        enum CodingKeys: String, CodingKey { case stages, globalBatchTokens = "global_batch_tokens", microBatch = "micro_batch" }
    }

    public struct Optimizer: Codable, Sendable {
        public var name: String
        public var lr: Double
        public var minLR: Double
        public var betas: [Double]
        public var eps: Double
        public var weightDecay: Double
        public var gradClip: Double
        enum CodingKeys: String, CodingKey {
            case name, lr, betas, eps
            case minLR = "min_lr", weightDecay = "weight_decay", gradClip = "grad_clip"
        }
    }

    public struct LRScheduleSection: Codable, Sendable {
        public var kind: String
        public var warmupTokens: Double
        /// For `wsd`: the fraction of the run spent decaying at the end.
        public var decayFraction: Double
        enum CodingKeys: String, CodingKey { case kind, warmupTokens = "warmup_tokens", decayFraction = "decay_fraction" }
    }

    public struct Distributed: Codable, Sendable {
        public var worldSize: Int
        public var bucketMB: Double
        public var overlap: Bool
        public var zeroStage: Int
        enum CodingKeys: String, CodingKey {
            case overlap, worldSize = "world_size", bucketMB = "bucket_mb", zeroStage = "zero_stage"
        }
    }

    public struct DeviceSection: Codable, Sendable {
        public var kind: String
        public var plugin: String?
    }

    public struct CheckpointSection: Codable, Sendable {
        public var everySteps: Int
        public var keepLast: Int
        /// Consecutive skipped (non-finite) steps after which the run stops.
        public var maxBadSteps: Int
        enum CodingKeys: String, CodingKey { case everySteps = "every_steps", keepLast = "keep_last", maxBadSteps = "max_bad_steps" }
    }

    public struct Log: Codable, Sendable {
        public var everySteps: Int
        public var evalEverySteps: Int
        public var evalSequences: Int
        /// Also write the metrics as TensorBoard event files under `<run dir>/tensorboard`.
        public var tensorboard: Bool
        enum CodingKeys: String, CodingKey {
            case everySteps = "every_steps", evalEverySteps = "eval_every_steps", evalSequences = "eval_sequences"
            case tensorboard
        }
    }

    public var run: Run
    public var model: ModelConfig
    public var tokenizer: String
    public var data: DataSection
    public var schedule: Schedule
    public var optimizer: Optimizer
    public var lrSchedule: LRScheduleSection
    public var distributed: Distributed
    public var device: DeviceSection
    public var checkpoint: CheckpointSection
    public var log: Log

    enum CodingKeys: String, CodingKey {
        case run, model, tokenizer, data, schedule, optimizer, distributed, device, checkpoint, log
        case lrSchedule = "lr_schedule"
    }

    // MARK: Derived quantities

    public var runDirectory: String { run.dir ?? "runs/\(run.name)" }
    /// Sequences in one global batch.
    public var sequencesPerStep: Int { schedule.globalBatchTokens / data.seqLen }
    /// Optimizer steps of each stage: its token budget in whole global batches (at least one).
    public var stepsPerStage: [Int] {
        schedule.stages.map { max(1, Int(($0.tokens / Double(schedule.globalBatchTokens)).rounded())) }
    }
    public var totalSteps: Int { stepsPerStage.reduce(0, +) }

    /// The stage that global step `step` (0-based) belongs to.
    public func stage(ofStep step: Int) -> Int {
        var end = 0
        for (index, steps) in stepsPerStage.enumerated() {
            end += steps
            if step < end { return index }
        }
        return stepsPerStage.count - 1
    }

    /// The YAML of the resolved config (defaults filled in), as written to the run directory and checkpoints.
    public var resolvedYAML: String { (try? YAMLEncoder().encode(self)) ?? "" }
}

/// A config that cannot be used: the message is one line naming the file, the key and what was expected.
public struct ConfigError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension TrainingConfig {
    /// Every default; a user's file is merged over it, so a config needs to say only what differs.
    static let defaultsYAML = """
        run: {name: swiftdraft, dir: null, seed: 1234, time_budget_hours: 24}
        tokenizer: bytes
        data: {seq_len: 256, sources: {}}
        schedule: {micro_batch: 8, stages: []}
        optimizer: {name: adamw, lr: 6.0e-4, min_lr: 6.0e-5, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, grad_clip: 1.0}
        lr_schedule: {kind: cosine, warmup_tokens: 0, decay_fraction: 0.2}
        distributed: {world_size: 1, bucket_mb: 25, overlap: true, zero_stage: 0}
        device: {kind: cpu, plugin: null}
        checkpoint: {every_steps: 500, keep_last: 3, max_bad_steps: 5}
        log: {every_steps: 10, eval_every_steps: 100, eval_sequences: 16, tensorboard: true}
        """

    /// Loads, overrides (`--set key.path=value`), validates and resolves a config file.
    public static func load(path: String, overrides: [String] = [], requireData: Bool = true) throws -> TrainingConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("\(path): cannot read config file")
        }
        return try parse(yaml: text, source: path, overrides: overrides, requireData: requireData)
    }

    public static func parse(yaml text: String, source: String, overrides: [String] = [],
                             requireData: Bool = true) throws -> TrainingConfig {
        var user: Node
        do {
            user = try Yams.compose(yaml: text) ?? Node.mapping([:])
        } catch {
            throw ConfigError("\(source): not valid YAML (\(String(describing: error).split(separator: "\n").first ?? ""))")
        }
        guard user.mapping != nil else { throw ConfigError("\(source): expected a mapping of sections at the top level") }
        for override in overrides {
            guard let eq = override.firstIndex(of: "="), eq != override.startIndex else {
                throw ConfigError("--set \(override): expected key.path=value")
            }
            let key = String(override[..<eq]), valueText = String(override[override.index(after: eq)...])
            let value = (try? Yams.compose(yaml: valueText)) ?? nil
            user = try setting(user, path: key.split(separator: ".").map(String.init), to: value ?? Node(valueText),
                               source: "--set \(override)")
        }
        try ConfigSchema.root.check(user, path: "", source: source)
        let defaults = try Yams.compose(yaml: defaultsYAML)!
        let merged = merge(defaults, user)
        let config: TrainingConfig
        do {
            config = try YAMLDecoder().decode(TrainingConfig.self, from: merged)
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw ConfigError("\(source): \(path): required key is missing")
        } catch {
            throw ConfigError("\(source): \(error)")
        }
        try config.validate(source: source, requireData: requireData)
        return config
    }

    /// Impossible values, checked before any work starts. `requireData` is false for commands that run on synthetic
    /// tokens (`bench`, `plan`), which need no sources.
    public func validate(source: String, requireData: Bool = true) throws {
        func fail(_ key: String, _ expected: String) -> ConfigError { ConfigError("\(source): \(key): expected \(expected)") }
        if let problem = model.firstProblem() { throw fail("model.\(problem.key)", problem.expected) }
        if data.seqLen <= 0 { throw fail("data.seq_len", "a positive integer, got \(data.seqLen)") }
        if data.seqLen > model.maxSeqLen {
            throw fail("data.seq_len", "at most model.max_seq_len \(model.maxSeqLen), got \(data.seqLen)")
        }
        if requireData && data.sources.isEmpty { throw fail("data.sources", "at least one source") }
        if model.headVocab != nil, requireData || model.headVocabSource != nil {
            // `bench` runs on synthetic tokens and may leave the source out; it then ranks those.
            let names = data.sources.keys.sorted().joined(separator: ", ")
            guard let name = model.headVocabSource else {
                throw fail("model.head_vocab_source", "the data source whose shards rank the ids for model.head_vocab (one of: \(names))")
            }
            if data.sources[name] == nil {
                throw fail("model.head_vocab_source", "a source named in data.sources (\(names)), got '\(name)'")
            }
        } else if model.headVocabSource != nil {
            throw fail("model.head_vocab_source", "to be given only with model.head_vocab")
        }
        if schedule.microBatch <= 0 { throw fail("schedule.micro_batch", "a positive integer, got \(schedule.microBatch)") }
        if schedule.globalBatchTokens <= 0 || schedule.globalBatchTokens % data.seqLen != 0 {
            throw fail("schedule.global_batch_tokens", "a positive multiple of data.seq_len \(data.seqLen), got \(schedule.globalBatchTokens)")
        }
        if distributed.worldSize <= 0 { throw fail("distributed.world_size", "a positive integer, got \(distributed.worldSize)") }
        let perStep = distributed.worldSize * schedule.microBatch
        if sequencesPerStep % perStep != 0 {
            throw fail("schedule.global_batch_tokens",
                       "\(sequencesPerStep) sequences per step to divide into world_size \(distributed.worldSize) x micro_batch \(schedule.microBatch)")
        }
        if requireData && schedule.stages.isEmpty { throw fail("schedule.stages", "at least one stage") }
        for (i, stage) in schedule.stages.enumerated() {
            if !(stage.tokens > 0) { throw fail("schedule.stages[\(i)].tokens", "a positive number, got \(stage.tokens)") }
            if stage.mixture.isEmpty { throw fail("schedule.stages[\(i)].mixture", "at least one source") }
            for (name, weight) in stage.mixture {
                if data.sources[name] == nil {
                    throw fail("schedule.stages[\(i)].mixture.\(name)", "a source named in data.sources (\(data.sources.keys.sorted().joined(separator: ", ")))")
                }
                if !(weight >= 0) { throw fail("schedule.stages[\(i)].mixture.\(name)", "a weight >= 0, got \(weight)") }
            }
            if !(stage.mixture.values.reduce(0, +) > 0) { throw fail("schedule.stages[\(i)].mixture", "weights summing to more than 0") }
            if let scale = stage.lrScale, !(scale > 0) { throw fail("schedule.stages[\(i)].lr_scale", "a positive number, got \(scale)") }
            if let loss = stage.loss {
                if !StageLoss.kinds.contains(loss.kind) {
                    throw fail("schedule.stages[\(i)].loss.kind", "one of \(StageLoss.kinds.joined(separator: ", ")), got '\(loss.kind)'")
                }
                if let weight = loss.kdWeight {
                    if loss.kind != "ce_kl" {
                        throw fail("schedule.stages[\(i)].loss.kd_weight", "no kd_weight with kind '\(loss.kind)' (it weighs ce against kl in kind ce_kl only)")
                    }
                    if !(weight >= 0 && weight <= 1) {
                        throw fail("schedule.stages[\(i)].loss.kd_weight", "a weight in [0, 1], got \(weight)")
                    }
                }
            }
        }
        if optimizer.name != "adamw" { throw fail("optimizer.name", "'adamw', got '\(optimizer.name)'") }
        if !(optimizer.lr > 0) { throw fail("optimizer.lr", "a positive number, got \(optimizer.lr)") }
        if !(optimizer.minLR >= 0 && optimizer.minLR <= optimizer.lr) {
            throw fail("optimizer.min_lr", "between 0 and optimizer.lr \(optimizer.lr), got \(optimizer.minLR)")
        }
        if optimizer.betas.count != 2 || !optimizer.betas.allSatisfy({ $0 >= 0 && $0 < 1 }) {
            throw fail("optimizer.betas", "two numbers in [0, 1), got \(optimizer.betas)")
        }
        if !(optimizer.eps > 0) { throw fail("optimizer.eps", "a positive number, got \(optimizer.eps)") }
        if !(optimizer.weightDecay >= 0) { throw fail("optimizer.weight_decay", "a number >= 0, got \(optimizer.weightDecay)") }
        if !(optimizer.gradClip >= 0) { throw fail("optimizer.grad_clip", "a number >= 0 (0 disables), got \(optimizer.gradClip)") }
        if !["cosine", "linear", "constant", "wsd"].contains(lrSchedule.kind) {
            throw fail("lr_schedule.kind", "one of cosine, linear, constant, wsd, got '\(lrSchedule.kind)'")
        }
        if !(lrSchedule.warmupTokens >= 0) { throw fail("lr_schedule.warmup_tokens", "a number >= 0") }
        if !(lrSchedule.decayFraction > 0 && lrSchedule.decayFraction <= 1) {
            throw fail("lr_schedule.decay_fraction", "a fraction in (0, 1], got \(lrSchedule.decayFraction)")
        }
        if !(distributed.bucketMB > 0) { throw fail("distributed.bucket_mb", "a positive number, got \(distributed.bucketMB)") }
        if distributed.zeroStage != 0 {
            throw fail("distributed.zero_stage", "0 (optimizer-state sharding is not implemented; refusing rather than silently replicating), got \(distributed.zeroStage)")
        }
        if !["cpu", "hpu"].contains(device.kind) { throw fail("device.kind", "cpu or hpu, got '\(device.kind)'") }
        if checkpoint.everySteps <= 0 { throw fail("checkpoint.every_steps", "a positive integer, got \(checkpoint.everySteps)") }
        if checkpoint.keepLast <= 0 { throw fail("checkpoint.keep_last", "a positive integer, got \(checkpoint.keepLast)") }
        if checkpoint.maxBadSteps <= 0 { throw fail("checkpoint.max_bad_steps", "a positive integer, got \(checkpoint.maxBadSteps)") }
        if log.everySteps <= 0 { throw fail("log.every_steps", "a positive integer, got \(log.everySteps)") }
        if log.evalEverySteps < 0 { throw fail("log.eval_every_steps", "an integer >= 0 (0 disables)") }
        if log.evalSequences < 0 { throw fail("log.eval_sequences", "an integer >= 0") }
    }

    /// Deep merge of mappings: `over` wins; sequences and scalars are replaced whole.
    static func merge(_ base: Node, _ over: Node) -> Node {
        guard let baseMap = base.mapping, let overMap = over.mapping else { return over }
        var result = baseMap
        for (key, value) in overMap {
            if let existing = result[key] { result[key] = merge(existing, value) } else { result[key] = value }
        }
        return .mapping(result)
    }

    static func setting(_ node: Node, path: [String], to value: Node, source: String) throws -> Node {
        guard let head = path.first else { return value }
        var map = node.mapping ?? Node.Mapping([])
        let child = map[head] ?? Node.mapping([:])
        if path.count > 1, child.mapping == nil {
            throw ConfigError("\(source): '\(head)' is not a section")
        }
        map[head] = try setting(child, path: Array(path.dropFirst()), to: value, source: source)
        return .mapping(map)
    }
}
