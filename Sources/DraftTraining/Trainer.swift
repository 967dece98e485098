import DraftCheckpoint
import DraftData
import DraftDevice
import DraftDistributed
import DraftFormats
import DraftModel
import DraftTokenizer
import Foundation

/// What `swiftdraft train` was asked beyond the config.
public struct TrainOptions: Sendable {
    public enum Resume: Sendable, Equatable {
        case auto, never
        case path(String)
    }

    public var resume: Resume = .auto
    /// Overrides `run.dir`.
    public var runDirectory: String?
    /// Stop after this global step (counted from the start of the run, so a resumed run given the same N ends at the
    /// same step).
    public var maxSteps: Int?
    /// Checks every kernel's output for NaN/Inf and prints per-phase timings.
    public var debug = false
    /// With `--resume never`, start over in a run directory that already holds checkpoints.
    public var overwrite = false
    /// Prints progress lines on stdout (rank 0 only).
    public var quiet = false
    /// A fresh run starts from this model's weights (`InitFromModel`) instead of a seeded initialisation.
    public var initFrom: String?

    public init() {}
}

/// What a finished run reports.
public struct TrainSummary: Sendable {
    public var steps: Int
    public var lastLoss: Double
    public var validationLoss: [String: Double]
    public var tokensPerSecond: Double
    public var stoppedBySignal: Bool
}

/// The data-parallel training loop of one rank.
///
/// Every rank holds a full replica; each global batch is split into equal contiguous slices of its sequences, one per
/// rank, and each slice into micro-batches of `schedule.micro_batch`. Gradients of the summed loss are all-reduced
/// (bucketed, overlapped with the last micro-batch's backward) and divided by the global batch's target count, so the
/// step is the same math whether it runs on 8 ranks or on one process accumulating all 8 slices.
public final class Trainer {
    public let config: TrainingConfig
    public let options: TrainOptions
    public let communicator: any Communicator
    public let device: any Device
    public let model: LlamaModel
    public let optimizer: AdamW
    public let loader: MixtureLoader
    /// The teacher rows a distillation stage trains against: the loader's `distill --top-k-logits` sources.
    let teacherSource: any TeacherRowSource
    /// Each stage's token loss.
    let losses: [TokenLoss]
    public let tokenizerFingerprint: String
    /// Whether a recorded fingerprint is this run's tokenizer (also the whole-file hash older checkpoints hold).
    let recognizesTokenizer: (String) -> Bool
    let schedule: LearningRateSchedule
    let runDirectory: URL
    let store: CheckpointStore
    /// `options.initFrom`'s weights, read (and checked) before anything is written.
    let initialParameters: [Float]?

    /// Global optimizer steps completed (also the index of the next step).
    public internal(set) var step = 0
    var consecutiveBadSteps = 0
    private var gradientSync: GradientSync?
    var metrics: MetricsLog?
    /// The device's matrix-product rate MFU divides by: measured at the start, and again whenever a logged interval
    /// beats it (the start ran on a busy machine: at 13:43 on 2026-12-06 the full recipe logged MFU 115%).
    private var peakGFLOPs: Double

    public var isLeader: Bool { communicator.rank == 0 }

    /// Builds everything and checks every input; writes nothing until all of it is valid.
    public init(config: TrainingConfig, options: TrainOptions, communicator: any Communicator,
                device: any Device) throws {
        self.config = config
        self.options = options
        self.communicator = communicator
        self.device = device
        let world = communicator.size
        let sequences = config.sequencesPerStep
        guard sequences % (world * config.schedule.microBatch) == 0 else {
            throw ConfigError("schedule: \(sequences) sequences per step (global_batch_tokens / seq_len) cannot be split over \(world) ranks x micro_batch \(config.schedule.microBatch)")
        }
        let tokenizer = try loadTokenizer(config.tokenizer)
        if tokenizer.vocabSize > config.model.vocabSize {
            throw ConfigError("model.vocab_size: \(config.model.vocabSize) is smaller than the tokenizer's \(tokenizer.vocabSize) ids (\(config.tokenizer))")
        }
        tokenizerFingerprint = tokenizer.fingerprint
        recognizesTokenizer = { tokenizer.recognizes(fingerprint: $0) }
        let sources = try config.data.sources.keys.sorted().map { name in
            try DataSource(name: name, path: config.data.sources[name]!.path)
        }
        for source in sources {
            try source.validate(tokenizer: tokenizer, modelVocab: config.model.vocabSize,
                                seqLen: config.data.seqLen)
        }
        loader = try MixtureLoader(sources: sources,
                                   stages: config.schedule.stages.map { StageMixture(name: $0.name, weights: $0.mixture) },
                                   seqLen: config.data.seqLen, seed: config.run.seed)
        teacherSource = loader
        losses = try stageLosses(config, loader: loader, teacher: teacherSource)
        model = try LlamaModel(config: config.model, device: device)
        initialParameters = try options.initFrom.map { try InitFromModel.parameters(from: $0, config: config.model, tokenizer: tokenizer) }
        optimizer = try AdamW(model: model, hyperparameters: AdamWHyperparameters(
            beta1: Float(config.optimizer.betas[0]), beta2: Float(config.optimizer.betas[1]),
            eps: Float(config.optimizer.eps), weightDecay: Float(config.optimizer.weightDecay),
            gradClip: Float(config.optimizer.gradClip)))
        schedule = LearningRateSchedule(config: config)
        runDirectory = URL(fileURLWithPath: options.runDirectory ?? config.runDirectory)
        store = CheckpointStore(directory: runDirectory.appendingPathComponent("checkpoints"),
                                keepLast: config.checkpoint.keepLast)
        peakGFLOPs = TestHooks.startPeakGFLOPs ?? measurePeakGFLOPs(device: device)
    }

    // MARK: Run

    public func run() throws -> TrainSummary {
        let resumed = try startOrResume()
        if isLeader {
            try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
            try config.resolvedYAML.write(to: runDirectory.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            metrics = try MetricsLog(path: runDirectory.appendingPathComponent("metrics.jsonl").path,
                                     tensorboardDirectory: config.log.tensorboard ? runDirectory.appendingPathComponent("tensorboard") : nil)
            if let resumed {
                metrics?.event("resume", [("step", step), ("checkpoint", resumed), ("world_size", communicator.size)])
                say("resumed from \(resumed) at step \(step)")
            }
        }
        try setUpReduction()
        PreemptionSignal.install()
        // Which device each rank drives (the HPU module, or -1 for the CPU), so a run's log shows the rank-to-module map.
        var modules = [Double](repeating: -1, count: communicator.size)
        modules[communicator.rank] = Double(device.moduleIndex ?? -1)
        modules = try communicator.allReduceMax(modules)
        metrics?.event("start", [("step", step), ("world_size", communicator.size), ("device", device.name),
                                 ("modules", modules.map { String(Int($0)) }.joined(separator: ","))])

        let total = config.totalSteps
        let lastStep = min(total, options.maxSteps ?? total)
        say("\(config.run.name): \(model.layout.count.formatted()) parameters, \(total) steps of \(config.schedule.globalBatchTokens.formatted()) tokens, \(communicator.size) rank(s) on \(device.name)")
        var lastLoss = Double.nan
        var stoppedBySignal = false
        let runStart = now()
        var intervalStart = runStart, intervalTokens = 0, stepsThisProcess = 0, intervalStartStep = step
        var intervalBytes = device.transferCounters ?? (0, 0)
        var phases = PhaseTimes()
        var lastStage = step > 0 ? config.stage(ofStep: step - 1) : -1

        while step < lastStep {
            let stageIndex = config.stage(ofStep: step)
            if stageIndex != lastStage {
                metrics?.event("stage_start", [("step", step), ("stage", config.schedule.stages[stageIndex].name)])
                say("stage \(config.schedule.stages[stageIndex].name) from step \(step)")
                lastStage = stageIndex
            }
            let result = try trainStep(stage: stageIndex, phases: &phases)
            step += 1
            stepsThisProcess += 1
            intervalTokens += config.schedule.globalBatchTokens

            if let loss = result.loss {
                lastLoss = loss
                consecutiveBadSteps = 0
            } else {
                consecutiveBadSteps += 1
                metrics?.event("skip_step", [("step", step), ("loss", result.rawLoss), ("grad_norm", result.gradNorm)])
                say("step \(step): non-finite loss \(result.rawLoss) or gradient norm \(result.gradNorm): update skipped on every rank")
                if consecutiveBadSteps > config.checkpoint.maxBadSteps {
                    throw TrainingFailure("\(consecutiveBadSteps) consecutive non-finite steps (checkpoint.max_bad_steps \(config.checkpoint.maxBadSteps)); stopping with the last good checkpoint intact")
                }
            }

            let stageEnds = step == total || config.stage(ofStep: step) != stageIndex
            let logNow = step % config.log.everySteps == 0 || step == lastStep || result.stop
            if logNow {
                let t = now()
                let tokensPerSecond = Double(intervalTokens) / max(t - intervalStart, 1e-9)
                let elapsed = t - runStart
                let eta = Double(lastStep - step) * elapsed / Double(stepsThisProcess)
                let flops = tokensPerSecond * config.model.trainingFLOPsPerToken(seqLen: config.data.seqLen)
                if flops > peakGFLOPs * 1e9 * Double(communicator.size) {
                    // Noise only ever slows the measurement, so the higher of the two is the better estimate.
                    peakGFLOPs = max(peakGFLOPs, measurePeakGFLOPs(device: device))
                }
                let mfu = flops / (peakGFLOPs * 1e9 * Double(communicator.size))
                var fields: [(String, Any)] = [
                    ("step", step), ("stage", config.schedule.stages[stageIndex].name),
                    ("tokens", step * config.schedule.globalBatchTokens), ("loss", result.rawLoss),
                    ("lr", result.lr), ("grad_norm", result.gradNorm), ("tokens_per_s", tokensPerSecond),
                    ("mfu", mfu), ("elapsed_s", elapsed), ("eta_s", eta),
                ]
                if let coverage = result.headCoverage { fields.append(("head_coverage", coverage)) }
                if let terms = result.terms {
                    fields += [("ce_loss", terms.ce), ("kd_loss", terms.kd), ("kd_rows", terms.teacherRows)]
                }
                if let stats = gradientSync?.reducer.lastStepStats, communicator.size > 1 {
                    fields += [("allreduce_s", stats.mpiSeconds + stats.blockedSeconds), ("allreduce_blocked_s", stats.blockedSeconds),
                               ("allreduce_hidden_s", stats.hiddenSeconds),
                               ("allreduce_buckets_during_backward", stats.bucketsStartedDuringBackward)]
                }
                if let counters = device.transferCounters {
                    // Per step over the logging interval: the device boundary's traffic, which staging adds.
                    let steps = UInt64(max(step - intervalStartStep, 1))
                    fields += [("bytes_to_device", Int((counters.toDevice - intervalBytes.toDevice) / steps)),
                               ("bytes_to_host", Int((counters.toHost - intervalBytes.toHost) / steps))]
                    intervalBytes = counters
                }
                metrics?.write(fields)
                say(String(format: "step %d/%d | %@ | loss %.4f | lr %.2e | gnorm %.3f | %@ tok/s | MFU %.1f%% | elapsed %@ | eta %@",
                           step, lastStep, config.schedule.stages[stageIndex].name, result.rawLoss, result.lr,
                           result.gradNorm, Int(tokensPerSecond).formatted(), mfu * 100, formatDuration(elapsed),
                           formatDuration(eta)))
                if options.debug { say(phases.report(steps: stepsThisProcess)) }
                intervalStart = t
                intervalStartStep = step
                intervalTokens = 0
            }
            if config.log.evalEverySteps > 0 && (step % config.log.evalEverySteps == 0 || step == lastStep) {
                try evaluate()
            }
            if TestHooks.stepDelay > 0 { usleep(UInt32(TestHooks.stepDelay * 1e6)) }
            if injectedFailure(rank: communicator.rank, step: step) {
                throw TrainingFailure("injected failure (SWIFTDRAFT_TEST_FAIL_AT) at step \(step)")
            }
            if result.stop {
                try saveCheckpoint(reason: "preemption")
                say("stopping at step \(step) on SIGTERM/SIGINT; checkpoint written")
                stoppedBySignal = true
                break
            }
            // While steps are being skipped, keep the newest checkpoint the one after the last good update.
            if consecutiveBadSteps == 0 && (step % config.checkpoint.everySteps == 0 || stageEnds || step == lastStep) {
                try saveCheckpoint(reason: stageEnds ? "stage_end" : "periodic")
            }
        }
        let validation = config.log.evalEverySteps > 0 ? lastValidation : [:]
        try communicator.barrier()
        let seconds = now() - runStart
        return TrainSummary(steps: step, lastLoss: lastLoss, validationLoss: validation,
                            tokensPerSecond: Double(stepsThisProcess * config.schedule.globalBatchTokens) / max(seconds, 1e-9),
                            stoppedBySignal: stoppedBySignal)
    }

    // MARK: One step

    struct StepResult {
        /// nil when the step was skipped as non-finite.
        var loss: Double?
        var rawLoss: Double
        var gradNorm: Double
        var lr: Double
        /// Every rank saw a stop request (SIGTERM/SIGINT on any rank).
        var stop: Bool
        /// A distillation stage's terms: mean ce over target rows, mean divergence over target rows with a teacher
        /// row, and the fraction of target rows that had one; nil under cross-entropy.
        var terms: (ce: Double, kd: Double, teacherRows: Double)?
        /// With a subset head: the fraction of the step's targets inside it (the others were left out of the loss).
        var headCoverage: Double? = nil
    }

    struct PhaseTimes {
        var data = 0.0, compute = 0.0, reduce = 0.0, optimizer = 0.0
        func report(steps: Int) -> String {
            let n = Double(max(steps, 1))
            return String(format: "  per step: data %.3fs | forward+backward %.3fs | all-reduce %.3fs | optimizer %.3fs",
                          data / n, compute / n, reduce / n, optimizer / n)
        }
    }

    private func trainStep(stage: Int, phases: inout PhaseTimes) throws -> StepResult {
        let world = communicator.size, rank = communicator.rank
        let seqLen = config.data.seqLen, micro = config.schedule.microBatch
        var t0 = now()
        let samples = loader.nextSamples(config.sequencesPerStep, stage: stage)
        let perRank = samples.count / world
        let mine = samples[(rank * perRank)..<((rank + 1) * perRank)]
        var tokens = [Int32](repeating: 0, count: micro * seqLen), targets = tokens
        let tokenLoss = losses[stage]
        // Validated at init: a distillation stage has a teacher source with a K.
        var teacher = tokenLoss == .crossEntropy ? nil : TeacherRows(k: teacherSource.teacherK ?? 1, rows: micro * seqLen)
        try model.zeroGradients()
        var sums = LossSums(), outsideHead = 0
        let microSteps = perRank / micro
        for m in 0..<microSteps {
            let batch = mine[(mine.startIndex + m * micro)..<(mine.startIndex + (m + 1) * micro)]
            tokens.withUnsafeMutableBufferPointer { tokenBuffer in
                targets.withUnsafeMutableBufferPointer { targetBuffer in
                    for (i, sample) in batch.enumerated() {
                        loader.fill(sample, tokens: tokenBuffer.baseAddress! + i * seqLen,
                                    targets: targetBuffer.baseAddress! + i * seqLen)
                    }
                }
            }
            if teacher != nil { fillTeacher(&teacher!, batch, seqLen: seqLen) }
            let t1 = now()
            phases.data += t1 - t0
            let last = m == microSteps - 1
            let ready = last ? gradientSync?.readyHandler : nil
            let r = try model.forwardBackward(tokens: tokens, targets: targets, teacher: teacher, loss: tokenLoss,
                                              batch: micro, seqLen: seqLen, lossScale: 1, gradientsReady: ready)
            if options.debug { try checkFinite(r.loss, "loss of micro-batch \(m)") }
            sums.loss += r.loss
            sums.targets += r.targets
            sums.crossEntropy += r.crossEntropy
            sums.divergence += r.divergence
            sums.teacherRows += r.teacherRows
            outsideHead += model.lastOutsideHeadTargets
            t0 = now()
            phases.compute += t0 - t1
        }
        try reduceGradients()
        if TestHooks.nanSteps.contains(step + 1) { try device.fill(model.gradients, count: 1, value: .nan) }
        let stopRequested = PreemptionSignal.requested ? 1.0 : 0.0
        let totals = try communicator.allReduceSum([sums.loss, Double(sums.targets), stopRequested,
                                                    sums.crossEntropy, sums.divergence, Double(sums.teacherRows),
                                                    Double(outsideHead)])
        let t2 = now()
        phases.reduce += t2 - t0
        let globalTargets = max(totals[1], 1)
        // The buffer holds the gradient of the summed loss; AdamW folds 1/targets into its clipping pass.
        let gradientScale = Float(1 / globalTargets)
        let bufferNorm = try optimizer.gradientNorm()
        let gradNorm = Double(bufferNorm * gradientScale)
        let loss = totals[0] / globalTargets
        let lr = schedule.rate(step: step)
        let finite = loss.isFinite && gradNorm.isFinite
        if finite { try optimizer.update(lr: Float(lr), gradNorm: bufferNorm, gradientScale: gradientScale) }
        phases.optimizer += now() - t2
        // The two terms of a distillation stage, each over its own rows: ce over target rows, kd over those with a
        // teacher row.
        let terms = tokenLoss == .crossEntropy ? nil
            : (ce: totals[3] / globalTargets, kd: totals[4] / max(totals[5], 1), teacherRows: totals[5] / globalTargets)
        let headCoverage = config.model.headVocab == nil ? nil : totals[1] / max(totals[1] + totals[6], 1)
        return StepResult(loss: finite ? loss : nil, rawLoss: loss, gradNorm: gradNorm, lr: lr, stop: totals[2] > 0,
                          terms: terms, headCoverage: headCoverage)
    }

    /// The teacher rows of one micro-batch: the source's where it carries them, none (-1) where it is raw text.
    private func fillTeacher(_ teacher: inout TeacherRows, _ samples: ArraySlice<SampleReference>, seqLen: Int) {
        let k = teacher.k, source = teacherSource
        teacher.ids.withUnsafeMutableBufferPointer { ids in
            teacher.logprobs.withUnsafeMutableBufferPointer { logprobs in
                for (i, sample) in samples.enumerated() {
                    let rowIds = ids.baseAddress! + i * seqLen * k, rowLogprobs = logprobs.baseAddress! + i * seqLen * k
                    if source.carriesTeacher(source: sample.source) {
                        source.fillTeacher(sample, ids: rowIds, logprobs: rowLogprobs)
                    } else {
                        rowIds.update(repeating: -1, count: seqLen * k)
                        rowLogprobs.update(repeating: 0, count: seqLen * k)
                    }
                }
            }
        }
    }

    /// Sums gradients over ranks: bucket by bucket, in place on a host-memory device, staged through host memory on
    /// others; with overlap the buckets started during the last micro-batch's backward are only waited for here.
    private func reduceGradients() throws {
        guard let gradientSync, communicator.size > 1 else { return }
        try gradientSync.finish()
    }

    private func setUpReduction() throws {
        guard communicator.size > 1 else { return }
        let overlap = config.distributed.overlap
        gradientSync = GradientSync(device: device, gradients: model.gradients, count: model.layout.count,
                                    communicator: communicator,
                                    bucketBytes: Int(config.distributed.bucketMB * 1_048_576), overlap: overlap,
                                    progressThread: overlap && progressThreadHelps(device: device))
        // The reference the metrics' allreduce_hidden_s is estimated against (a blocking reduction of the same
        // buckets, timed once here; collective, so every rank calls it at this point).
        if overlap { try gradientSync?.reducer.calibrate() }
    }

    private func checkFinite(_ value: Double, _ what: String) throws {
        guard value.isFinite else { throw TrainingFailure("--debug: \(what) is \(value) at step \(step + 1)") }
    }

    // MARK: Validation

    private(set) var lastValidation: [String: Double] = [:]

    /// Per-source validation loss on each source's held-out windows (rank 0 computes; the others go on to the next
    /// step's collectives and wait there).
    private func evaluate() throws {
        guard isLeader, config.log.evalSequences > 0 else { return }
        var losses: [String: Double] = [:]
        let micro = config.schedule.microBatch, seqLen = config.data.seqLen
        for (index, name) in loader.sourceNames.enumerated() {
            let sequences = loader.validationSequences(source: index, maxSequences: config.log.evalSequences)
            guard !sequences.isEmpty else { continue }
            var sum = 0.0, count = 0
            var start = 0
            while start < sequences.count {
                let chunk = sequences[start..<min(start + micro, sequences.count)]
                let r = try model.evaluate(tokens: chunk.flatMap(\.tokens), targets: chunk.flatMap(\.targets),
                                           batch: chunk.count, seqLen: seqLen)
                sum += r.lossSum
                count += r.targets
                start += micro
            }
            losses[name] = sum / Double(max(count, 1))
        }
        guard !losses.isEmpty else { return }
        lastValidation = losses
        metrics?.event("eval", [("step", step), ("val_loss", losses)])
        say("step \(step) validation: " + losses.keys.sorted().map { String(format: "%@ %.4f", $0, losses[$0]!) }.joined(separator: " | "))
    }

    // MARK: Output

    func say(_ line: String) {
        guard isLeader, !options.quiet else { return }
        print(line)
        fflush(stdout)
    }
}

/// A run that cannot go on (exit code 1).
public struct TrainingFailure: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// SIGTERM/SIGINT set a flag that the step loop reads; every rank learns of it through the step's scalar all-reduce,
/// so all ranks stop after the same step and write one checkpoint.
enum PreemptionSignal {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0
    static var requested: Bool { flag != 0 }

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in PreemptionSignal.flag = 1 }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
    }
}
