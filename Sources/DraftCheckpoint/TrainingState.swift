// Everything a checkpoint holds, as plain host values: what the trainer saves to resume exactly, and what inference
// and export read back (the model's shape and parameters, the tokenizer it was trained with).
import DraftModel

/// AdamW's state: the two moments per parameter (same flat layout as the parameters) and the step count.
public struct OptimizerState: Sendable, Equatable {
    /// First moments (`exp_avg`), `ParameterLayout.count` values.
    public var expAvg: [Float]
    /// Second moments (`exp_avg_sq`), `ParameterLayout.count` values.
    public var expAvgSq: [Float]
    /// Optimizer steps taken (bias correction depends on it).
    public var step: Int
    /// The betas the moments were accumulated with; stored for users' tools, not checked on resume.
    public var beta1: Double
    public var beta2: Double

    public init(expAvg: [Float], expAvgSq: [Float], step: Int, beta1: Double, beta2: Double) {
        self.expAvg = expAvg
        self.expAvgSq = expAvgSq
        self.step = step
        self.beta1 = beta1
        self.beta2 = beta2
    }
}

/// The complete state of a training run at the end of a step, independent of the number of ranks.
///
/// `CheckpointCodec` maps it onto the HDF5 layout of DESIGN.md ("Checkpoint (HDF5)") and back. Parameters and
/// moments are flat buffers laid out by `ParameterLayout(modelConfig)`; `/model` holds one dataset per slot.
public struct TrainingState: Sendable {
    /// The model's shape (`model_config` attribute, JSON).
    public var modelConfig: ModelConfig
    /// All parameters, laid out by `ParameterLayout(modelConfig)`.
    public var parameters: [Float]
    /// AdamW's moments and step; nil when only the model was read (`CheckpointCodec.decodeModel`).
    public var optimizer: OptimizerState?
    /// The data loader's global cursor, as `LoaderCursor.encoded` flattens it (`/data/cursor`).
    public var cursor: [Int64]
    /// The data sources the cursor counts draws of, in the loader's order (`/data@sources`, comma-separated).
    public var sourceNames: [String]
    /// The run's seed (`/rng/seed`): data order and initialisation derive from it alone.
    public var seed: UInt64
    /// Global optimizer steps completed.
    public var step: Int
    public var tokensSeen: Int
    /// The schedule stage the last completed step belonged to, by name and index.
    public var stageName: String
    public var stageIndex: Int
    /// Ranks of the run that wrote it (informational: resume works on any world size).
    public var worldSize: Int
    /// The resolved training config, as YAML.
    public var configYAML: String
    /// The tokenizer as the config named it (`bytes`, a `tokenizer.json` or `.gguf` path).
    public var tokenizer: String
    /// The tokenizer's content fingerprint (`tokenizer_sha256`).
    public var tokenizerFingerprint: String
    /// Non-finite steps skipped in a row just before this one.
    public var consecutiveBadSteps: Int
    /// The ids a subset LM head scores (`model.head_vocab`, ascending; `/data/head_ids`), nil for a full head.
    public var headIDs: [Int32]?

    public init(modelConfig: ModelConfig, parameters: [Float], optimizer: OptimizerState?, cursor: [Int64],
                sourceNames: [String], seed: UInt64, step: Int, tokensSeen: Int, stageName: String, stageIndex: Int,
                worldSize: Int, configYAML: String, tokenizer: String, tokenizerFingerprint: String,
                consecutiveBadSteps: Int, headIDs: [Int32]? = nil) {
        self.modelConfig = modelConfig
        self.parameters = parameters
        self.optimizer = optimizer
        self.cursor = cursor
        self.sourceNames = sourceNames
        self.seed = seed
        self.step = step
        self.tokensSeen = tokensSeen
        self.stageName = stageName
        self.stageIndex = stageIndex
        self.worldSize = worldSize
        self.configYAML = configYAML
        self.tokenizer = tokenizer
        self.tokenizerFingerprint = tokenizerFingerprint
        self.consecutiveBadSteps = consecutiveBadSteps
        self.headIDs = headIDs
    }
}
