import DraftDevice
import DraftDistributed
import DraftModel
import Foundation

/// Training throughput of a config's model on synthetic tokens (`swiftdraft bench`): the same step the trainer runs
/// (forward, backward, gradient norm, clipped AdamW) on one micro-batch per step, timed after one warm-up step.
public struct BenchmarkResult: Sendable {
    public var steps: Int
    public var tokensPerStep: Int
    public var secondsPerStep: [Double]
    public var flopsPerToken: Double
    public var peakGFLOPs: Double
    public var peakRSSBytes: Int
    public var parameters: Int
    /// Ranks that ran the benchmark together (each on its own micro-batch, gradients all-reduced every step).
    public var ranks: Int = 1
    /// Per step, medians: the all-reduce's time when it runs after backward (blocking), the part of it a step still
    /// waits for (with overlap, the MPI calls on backward's path plus the final wait), and the difference, which
    /// overlap hid. All 0 for one rank.
    public var allReduceSeconds: Double = 0
    public var exposedSeconds: Double = 0
    public var hiddenSeconds: Double = 0

    public var medianSecondsPerStep: Double {
        let sorted = secondsPerStep.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }
    public var tokensPerSecond: Double { Double(tokensPerStep) / medianSecondsPerStep }
    public var modelGFLOPs: Double { tokensPerSecond * flopsPerToken / 1e9 }
    public var mfu: Double { modelGFLOPs / peakGFLOPs }
}

/// With a communicator of several ranks, every rank runs the same step on its own micro-batch and the gradients are
/// all-reduced as in training (bucketed, overlapped with backward when `distributed.overlap` is on), so tokens/s per
/// rank against a single rank gives the scaling efficiency.
public func runBenchmark(config: TrainingConfig, device: any Device, steps: Int,
                         communicator: any Communicator = LocalCommunicator()) throws -> BenchmarkResult {
    let model = try LlamaModel(config: config.model, device: device)
    try model.initializeParameters(seed: config.run.seed)
    let optimizer = try AdamW(model: model, hyperparameters: AdamWHyperparameters(
        beta1: Float(config.optimizer.betas[0]), beta2: Float(config.optimizer.betas[1]),
        eps: Float(config.optimizer.eps), weightDecay: Float(config.optimizer.weightDecay),
        gradClip: Float(config.optimizer.gradClip)))
    let batch = config.schedule.microBatch, seqLen = config.data.seqLen
    var rng = SplitMix64(seed: config.run.seed)
    let stream = (0...(batch * seqLen)).map { _ in Int32(rng.next() % UInt64(config.model.vocabSize)) }
    let tokens = Array(stream.dropLast()), targets = Array(stream.dropFirst())
    if let k = config.model.headVocab {
        // No data to rank on: the synthetic targets are ranked instead. Speed does not depend on which ids they are.
        var counts = [Int](repeating: 0, count: config.model.vocabSize)
        for t in targets { counts[Int(t)] += 1 }
        try model.setHeadIDs(HeadVocabulary.top(counts: counts, k: k))
    }
    func makeSync(overlap: Bool) -> GradientSync? {
        guard communicator.size > 1 else { return nil }
        return GradientSync(device: device, gradients: model.gradients, count: model.layout.count,
                            communicator: communicator, bucketBytes: Int(config.distributed.bucketMB * 1_048_576),
                            overlap: overlap, progressThread: overlap && progressThreadHelps(device: device))
    }
    /// One training step; returns its wall time and the all-reduce time it exposed (inside communicator calls on
    /// the step's critical path, blocked waiting for them, or staging the gradient through host memory).
    func step(_ sync: GradientSync?) throws -> (seconds: Double, exposed: Double) {
        let start = now()
        try model.zeroGradients()
        let r = try model.forwardBackward(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen,
                                          gradientsReady: sync?.readyHandler)
        var exposed = 0.0
        if let sync {
            try sync.finish()
            let stats = sync.reducer.lastStepStats
            exposed = stats.readySeconds + stats.blockedSeconds + sync.lastStagingSeconds
        }
        try optimizer.update(lr: Float(config.optimizer.lr), gradNorm: try optimizer.gradientNorm(),
                             gradientScale: 1 / Float(r.targets * communicator.size))
        try device.synchronize()
        return (now() - start, exposed)
    }
    func median(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.sorted()[values.count / 2] }
    // The peak MFU divides by, measured before and after the steps and the higher kept: noise only ever slows a
    // measurement, and one taken while a neighbour was busy would put MFU above 1 (as the trainer's did, see Trainer).
    let peakBefore = measurePeakGFLOPs(device: device)

    // With overlap, the same steps first run with one blocking all-reduce after backward: the all-reduce time in the
    // step's own conditions (caches, memory traffic), against which the overlapped steps' exposed time is compared.
    var blockingTimes: [Double] = []
    if config.distributed.overlap, let blocking = makeSync(overlap: false) {
        _ = try step(blocking)
        for _ in 0..<steps { blockingTimes.append(try step(blocking).exposed) }
    }
    let sync = makeSync(overlap: config.distributed.overlap)
    var times: [Double] = [], exposedTimes: [Double] = []
    for i in 0...steps {
        let (seconds, exposed) = try step(sync)
        if i > 0 {
            times.append(seconds)
            exposedTimes.append(exposed)
        }
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return BenchmarkResult(steps: steps, tokensPerStep: batch * seqLen, secondsPerStep: times,
                           flopsPerToken: config.model.trainingFLOPsPerToken(seqLen: seqLen),
                           peakGFLOPs: max(peakBefore, measurePeakGFLOPs(device: device)), peakRSSBytes: usage.ru_maxrss * 1024,
                           parameters: model.layout.count, ranks: communicator.size,
                           allReduceSeconds: blockingTimes.isEmpty ? median(exposedTimes) : median(blockingTimes),
                           exposedSeconds: median(exposedTimes),
                           hiddenSeconds: blockingTimes.isEmpty ? 0 : max(0, median(blockingTimes) - median(exposedTimes)))
}
