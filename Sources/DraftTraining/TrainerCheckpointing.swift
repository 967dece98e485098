import DraftCheckpoint
import DraftData
import DraftDevice
import DraftModel
import Foundation

/// The trainer's side of checkpoints: device <-> host copies of the model and AdamW moments, the resume decision,
/// and metrics events. What goes where in the file is `CheckpointCodec`'s (module DraftCheckpoint).
///
/// The state is replicated, so rank 0 writes it; on resume every rank reads the same file (one server shares one
/// file system). Nothing in it depends on the number of ranks, so a run may resume on a different world size.
extension Trainer {
    /// Picks the checkpoint to resume (rank 0 decides, everyone follows) and loads it, or initialises a fresh model
    /// and broadcasts rank 0's parameters. Returns the file resumed from.
    func startOrResume() throws -> String? {
        var chosen: URL?
        switch options.resume {
        case .path(let path):
            chosen = URL(fileURLWithPath: path)
        case .never:
            if isLeader, !(try store.checkpoints()).isEmpty {
                guard options.overwrite else {
                    throw ConfigError("\(runDirectory.path): holds checkpoints; use --resume auto to continue, or --overwrite to start over")
                }
                try? FileManager.default.removeItem(at: store.directory)
                try? FileManager.default.removeItem(at: runDirectory.appendingPathComponent("metrics.jsonl"))
            }
        case .auto:
            var resumeStep: [Int64] = [-1]
            if isLeader {
                let (url, warnings) = try store.newestValid()
                for warning in warnings { printWarning(warning) }
                if let url, let step = CheckpointStore.step(fromFileName: url.lastPathComponent) {
                    resumeStep = [Int64(step)]
                }
            }
            try communicator.broadcast(&resumeStep, root: 0)
            if resumeStep[0] >= 0 { chosen = store.url(step: Int(resumeStep[0])) }
        }
        if let chosen {
            try restore(from: chosen)
            return chosen.path
        }
        if let initialParameters {
            try model.setParameters(initialParameters)
            say("initialised from \(options.initFrom ?? "")")
        } else {
            try model.initializeParameters(seed: config.run.seed)
        }
        // Ranked once, here: a resumed run takes the ids from its checkpoint, even if the source has grown since.
        // The ranking is a function of the data alone, so every rank computes the same ids.
        if let ids = try HeadVocabulary.rank(config: config.model, sources: loader.sources) {
            try model.setHeadIDs(ids)
        }
        // Replicas must start identical whatever each rank's initialisation did.
        var parameters = try model.readParameters()
        try communicator.broadcast(&parameters, root: 0)
        try model.setParameters(parameters)
        return nil
    }

    /// Loads a checkpoint into this trainer: the file must have been written with this config's tokenizer, model
    /// shape and data sources (each mismatch is an error naming the file and what differs).
    private func restore(from url: URL) throws {
        let reader = try CheckpointReader(url: url)
        // Checked before any tensor is read: a different vocabulary makes every other check moot.
        let fingerprint = try reader.string(CheckpointCodec.Key.tokenizerFingerprint)
        guard recognizesTokenizer(fingerprint) else {
            throw CheckpointError(path: url.path, reason: "tokenizer_sha256 is \(fingerprint), the config's tokenizer is \(tokenizerFingerprint)")
        }
        let state = try CheckpointCodec.decode(reader, expecting: model.layout)
        guard state.modelConfig.headVocab == config.model.headVocab else {
            throw CheckpointError(path: url.path, reason: "model_config.head_vocab is \(state.modelConfig.headVocab.map(String.init) ?? "unset"), the config's model.head_vocab is \(config.model.headVocab.map(String.init) ?? "unset")")
        }
        guard let cursor = LoaderCursor(encoded: state.cursor, sources: loader.sources.count) else {
            throw CheckpointError(path: url.path, reason: "/data/cursor holds \(state.cursor.count) values, expected \(2 + loader.sources.count) for \(loader.sources.count) data sources")
        }
        guard state.sourceNames == loader.sourceNames else {
            throw CheckpointError(path: url.path, reason: "data sources are [\(state.sourceNames.joined(separator: ","))], the config has [\(loader.sourceNames.joined(separator: ","))]")
        }
        guard let moments = state.optimizer else {
            throw CheckpointError(path: url.path, reason: "expected the optimizer state in /optimizer")
        }
        try loader.restore(cursor)
        try model.setParameters(state.parameters)
        if let ids = state.headIDs { try model.setHeadIDs(ids) }
        try moments.expAvg.withUnsafeBufferPointer { try device.copyToDevice($0, optimizer.m) }
        try moments.expAvgSq.withUnsafeBufferPointer { try device.copyToDevice($0, optimizer.v) }
        optimizer.step = moments.step
        step = state.step
        consecutiveBadSteps = state.consecutiveBadSteps
    }

    /// Rank 0 writes the replicated state; the other ranks go on and meet it at the next collective, so they wait for
    /// no longer than the write itself.
    func saveCheckpoint(reason: String) throws {
        guard isLeader else { return }
        let layout = model.layout
        let stageIndex = config.stage(ofStep: max(step - 1, 0))
        let state = TrainingState(
            modelConfig: config.model, parameters: try model.readParameters(),
            optimizer: OptimizerState(expAvg: try device.download(optimizer.m, count: layout.count),
                                      expAvgSq: try device.download(optimizer.v, count: layout.count),
                                      step: optimizer.step, beta1: Double(optimizer.hyperparameters.beta1),
                                      beta2: Double(optimizer.hyperparameters.beta2)),
            cursor: loader.cursor.encoded, sourceNames: loader.sourceNames, seed: config.run.seed, step: step,
            tokensSeen: step * config.schedule.globalBatchTokens, stageName: config.schedule.stages[stageIndex].name,
            stageIndex: stageIndex, worldSize: communicator.size, configYAML: config.resolvedYAML,
            tokenizer: Self.recordedTokenizerSpec(config.tokenizer), tokenizerFingerprint: tokenizerFingerprint,
            consecutiveBadSteps: consecutiveBadSteps, headIDs: model.headIDs)
        let saved = try store.save(step: step, expectedTensorCount: CheckpointCodec.tensorCount(of: state)) { writer in
            try CheckpointCodec.encode(state, into: &writer)
        }
        for warning in saved.warnings { printWarning(warning) }
        metrics?.event("checkpoint", [("step", step), ("reason", reason), ("path", saved.url.path),
                                    ("seconds", saved.seconds), ("mb_per_s", saved.megabytesPerSecond)])
    }

    /// The tokenizer spec as `generate` or `export` will need it from another working directory: a relative file path
    /// made absolute against this process's one (`bytes` and absolute paths as they are).
    public static func recordedTokenizerSpec(_ spec: String) -> String {
        guard spec != "bytes", !spec.hasPrefix("/") else { return spec }
        return URL(fileURLWithPath: spec).standardizedFileURL.path
    }
}

/// One warning line on stderr. The checkpoint store's warnings may already carry the "warning: " prefix; it is
/// written once either way.
func printWarning(_ text: String) {
    let line = text.hasPrefix("warning: ") ? text : "warning: " + text
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
