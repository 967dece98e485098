import DraftCheckpoint
import DraftData
import DraftDevice
import DraftModel
import Foundation

/// Checkpoint save and restore for the trainer: the model, AdamW moments and step, the loader's cursor, and the
/// counters the loop needs to continue exactly where it stopped.
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
                for warning in warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
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
        try model.initializeParameters(seed: config.run.seed)
        // Replicas must start identical whatever each rank's initialisation did.
        var parameters = try model.readParameters()
        try communicator.broadcast(&parameters, root: 0)
        try model.setParameters(parameters)
        return nil
    }

    private func restore(from url: URL) throws {
        let reader = try CheckpointReader(url: url)
        guard case .string(CheckpointFormat.name)? = reader.attributes["format"] else {
            throw CheckpointError(path: url.path, reason: "expected attribute format = \"\(CheckpointFormat.name)\"")
        }
        let fingerprint = try reader.string("tokenizer_sha256")
        guard recognizesTokenizer(fingerprint) else {
            throw CheckpointError(path: url.path, reason: "tokenizer_sha256 is \(fingerprint), the config's tokenizer is \(tokenizerFingerprint)")
        }
        let layout = model.layout
        var parameters = [Float](repeating: 0, count: layout.count)
        var m = parameters, v = parameters
        for slot in layout.slots {
            guard let info = reader.dataset(slot.name, in: .model) else {
                throw CheckpointError(path: url.path, reason: "expected tensor /model/\(slot.name) for this config's model, not found")
            }
            guard info.shape == slot.shape else {
                throw CheckpointError(path: url.path, reason: "tensor /model/\(slot.name) has shape \(info.shape), the config's model expects \(slot.shape)")
            }
            try parameters.withUnsafeMutableBufferPointer { all in
                try reader.read(info, into: UnsafeMutableBufferPointer(rebasing: all[slot.offset..<(slot.offset + slot.count)]))
            }
            for (name, target) in [("\(slot.name).exp_avg", 0), ("\(slot.name).exp_avg_sq", 1)] {
                guard let moment = reader.dataset(name, in: .optimizer), moment.shape == slot.shape else {
                    throw CheckpointError(path: url.path, reason: "expected tensor /optimizer/\(name) of shape \(slot.shape)")
                }
                if target == 0 {
                    try m.withUnsafeMutableBufferPointer { try reader.read(moment, into: UnsafeMutableBufferPointer(rebasing: $0[slot.offset..<(slot.offset + slot.count)])) }
                } else {
                    try v.withUnsafeMutableBufferPointer { try reader.read(moment, into: UnsafeMutableBufferPointer(rebasing: $0[slot.offset..<(slot.offset + slot.count)])) }
                }
            }
        }
        let cursorValues = try reader.readInt64s("cursor", in: .data)
        guard let cursor = LoaderCursor(encoded: cursorValues, sources: loader.sources.count) else {
            throw CheckpointError(path: url.path, reason: "/data/cursor holds \(cursorValues.count) values, expected \(2 + loader.sources.count) for \(loader.sources.count) data sources")
        }
        let savedSources = (try? reader.string("sources", in: .data)) ?? ""
        guard savedSources == loader.sourceNames.joined(separator: ",") else {
            throw CheckpointError(path: url.path, reason: "data sources are [\(savedSources)], the config has [\(loader.sourceNames.joined(separator: ","))]")
        }
        try loader.restore(cursor)
        try model.setParameters(parameters)
        try m.withUnsafeBufferPointer { try device.copyToDevice($0, optimizer.m) }
        try v.withUnsafeBufferPointer { try device.copyToDevice($0, optimizer.v) }
        optimizer.step = Int(try reader.int("step", in: .optimizer))
        step = Int(try reader.int("step"))
        consecutiveBadSteps = Int((try? reader.int("consecutive_bad_steps")) ?? 0)
    }

    /// Rank 0 writes the replicated state; the other ranks go on and meet it at the next collective, so they wait for
    /// no longer than the write itself.
    func saveCheckpoint(reason: String) throws {
        guard isLeader else { return }
        let layout = model.layout
        let parameters = try model.readParameters()
        let m = try device.download(optimizer.m, count: layout.count)
        let v = try device.download(optimizer.v, count: layout.count)
        let stageIndex = config.stage(ofStep: max(step - 1, 0))
        let saved = try parameters.withUnsafeBufferPointer { p in
            try m.withUnsafeBufferPointer { mp in
                try v.withUnsafeBufferPointer { vp in
                    try store.save(step: step, expectedTensorCount: 3 * layout.slots.count) { writer in
                        try writer.setAttributes([
                            "step": .int(Int64(step)),
                            "tokens_seen": .int(Int64(step * config.schedule.globalBatchTokens)),
                            "stage": .string(config.schedule.stages[stageIndex].name),
                            "stage_index": .int(Int64(stageIndex)),
                            "world_size": .int(Int64(communicator.size)),
                            "config_yaml": .string(config.resolvedYAML),
                            "tokenizer_sha256": .string(tokenizerFingerprint),
                            "consecutive_bad_steps": .int(Int64(consecutiveBadSteps)),
                        ])
                        func slice(_ buffer: UnsafeBufferPointer<Float>, _ slot: TensorSlot) -> UnsafeBufferPointer<Float> {
                            UnsafeBufferPointer(rebasing: buffer[slot.offset..<(slot.offset + slot.count)])
                        }
                        for slot in layout.slots {
                            try writer.write(TensorSource(name: slot.name, shape: slot.shape, values: slice(p, slot)), to: .model)
                        }
                        for slot in layout.slots {
                            try writer.write(TensorSource(name: slot.name + ".exp_avg", shape: slot.shape, values: slice(mp, slot)), to: .optimizer)
                            try writer.write(TensorSource(name: slot.name + ".exp_avg_sq", shape: slot.shape, values: slice(vp, slot)), to: .optimizer)
                        }
                        try writer.setAttributes([
                            "step": .int(Int64(optimizer.step)),
                            "beta1": .double(Double(optimizer.hyperparameters.beta1)),
                            "beta2": .double(Double(optimizer.hyperparameters.beta2)),
                        ], in: .optimizer)
                        try writer.writeInt64s("cursor", loader.cursor.encoded, to: .data)
                        try writer.setAttribute("sources", .string(loader.sourceNames.joined(separator: ",")), in: .data)
                        // Data order and initialisation derive from the seed alone; no generator state runs on.
                        try writer.writeInt64s("seed", [Int64(bitPattern: config.run.seed)], to: .rng)
                    }
                }
            }
        }
        for warning in saved.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        metrics?.event("checkpoint", [("step", step), ("reason", reason), ("path", saved.url.path),
                                    ("seconds", saved.seconds), ("mb_per_s", saved.megabytesPerSecond)])
    }
}
