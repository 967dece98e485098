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
    /// Per step, medians: seconds inside MPI calls plus blocked waiting, and the estimate of all-reduce time hidden
    /// behind backward by overlap (0 for one rank).
    public var allReduceSeconds: Double = 0
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
    var reducer: GradientReducer?
    if communicator.size > 1, device is CPUDevice {
        reducer = GradientReducer(communicator: communicator,
                                  gradient: UnsafeMutablePointer<Float>(bitPattern: UInt(model.gradients.address))!,
                                  count: model.layout.count, bucketBytes: Int(config.distributed.bucketMB * 1_048_576),
                                  overlap: config.distributed.overlap,
                                  progressThread: config.distributed.overlap && progressThreadHelps(device: device))
        try reducer?.calibrate()
    }
    var times: [Double] = [], reduceTimes: [Double] = [], hidden: [Double] = []
    for i in 0...steps {
        let start = now()
        try model.zeroGradients()
        let ready: ((Int) throws -> Void)? = reducer?.overlap == true ? { try reducer?.gradientsReady(from: $0) } : nil
        let r = try model.forwardBackward(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen,
                                          gradientsReady: ready)
        if let reducer {
            try reducer.finish()
            let stats = reducer.lastStepStats
            if i > 0 {
                reduceTimes.append(stats.mpiSeconds + stats.blockedSeconds)
                hidden.append(stats.hiddenSeconds)
            }
        }
        try device.scale(model.gradients, count: model.layout.count, by: 1 / Float(r.targets * communicator.size))
        let norm = try optimizer.gradientNorm()
        try optimizer.update(lr: Float(config.optimizer.lr), gradNorm: norm)
        try device.synchronize()
        if i > 0 { times.append(now() - start) }
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func median(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.sorted()[values.count / 2] }
    return BenchmarkResult(steps: steps, tokensPerStep: batch * seqLen, secondsPerStep: times,
                           flopsPerToken: config.model.trainingFLOPsPerToken(seqLen: seqLen),
                           peakGFLOPs: measurePeakGFLOPs(device: device), peakRSSBytes: usage.ru_maxrss * 1024,
                           parameters: model.layout.count, ranks: communicator.size,
                           allReduceSeconds: median(reduceTimes), hiddenSeconds: median(hidden))
}
