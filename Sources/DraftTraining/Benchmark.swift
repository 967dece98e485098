import DraftDevice
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

    public var medianSecondsPerStep: Double {
        let sorted = secondsPerStep.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }
    public var tokensPerSecond: Double { Double(tokensPerStep) / medianSecondsPerStep }
    public var modelGFLOPs: Double { tokensPerSecond * flopsPerToken / 1e9 }
    public var mfu: Double { modelGFLOPs / peakGFLOPs }
}

public func runBenchmark(config: TrainingConfig, device: any Device, steps: Int) throws -> BenchmarkResult {
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
    var times: [Double] = []
    for i in 0...steps {
        let start = now()
        try model.zeroGradients()
        let r = try model.forwardBackward(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen)
        try device.scale(model.gradients, count: model.layout.count, by: 1 / Float(r.targets))
        let norm = try optimizer.gradientNorm()
        try optimizer.update(lr: Float(config.optimizer.lr), gradNorm: norm)
        try device.synchronize()
        if i > 0 { times.append(now() - start) }
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return BenchmarkResult(steps: steps, tokensPerStep: batch * seqLen, secondsPerStep: times,
                           flopsPerToken: config.model.trainingFLOPsPerToken(seqLen: seqLen),
                           peakGFLOPs: measurePeakGFLOPs(device: device), peakRSSBytes: usage.ru_maxrss * 1024,
                           parameters: model.layout.count)
}
