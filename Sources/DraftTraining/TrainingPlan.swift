import DraftFormats
import DraftModel
import Foundation

/// The arithmetic of a schedule on `devices` accelerators (`swiftdraft plan`): what each stage costs, what each device
/// must hold and sustain, and whether the run fits its time budget and the devices' memory.
public struct TrainingPlan: Sendable {
    public struct StagePlan: Sendable {
        public let name: String
        public let steps: Int
        public let tokens: Int
    }

    public let devices: Int
    public let parameters: Int
    public let tokensPerStep: Int
    public let sequencesPerDevicePerStep: Int
    public let microStepsPerStep: Int
    public let stages: [StagePlan]
    public let totalTokens: Int
    public let flopsPerToken: Double
    /// Bytes per device: parameters, gradients, AdamW moments (fp32, replicated: ZeRO stage 0), activations of one
    /// micro-batch, and the attention kernel's per-thread score scratch.
    public let parameterBytes: Int
    public let gradientBytes: Int
    public let optimizerBytes: Int
    public let activationBytes: Int
    public var totalBytesPerDevice: Int { parameterBytes + gradientBytes + optimizerBytes + activationBytes }
    public let deviceMemoryBytes: Int
    public let timeBudgetSeconds: Double
    /// Tokens per second each device must process to finish within the budget.
    public var requiredTokensPerSecondPerDevice: Double { Double(totalTokens) / timeBudgetSeconds / Double(devices) }
    public var requiredTFLOPsPerDevice: Double { requiredTokensPerSecondPerDevice * flopsPerToken / 1e12 }
    /// The measured or expected rate per device (`--tokens-per-second`), if given.
    public let tokensPerSecondPerDevice: Double?
    public var etaSeconds: Double? { tokensPerSecondPerDevice.map { Double(totalTokens) / ($0 * Double(devices)) } }

    public var fitsMemory: Bool { totalBytesPerDevice <= deviceMemoryBytes }
    public var fitsTime: Bool { tokensPerSecondPerDevice.map { $0 >= requiredTokensPerSecondPerDevice } ?? true }

    public init(config: TrainingConfig, devices: Int, tokensPerSecond: Double?, deviceMemoryBytes: Int) {
        self.devices = devices
        let c = config.model, seqLen = config.data.seqLen
        parameters = c.parameterCount
        tokensPerStep = config.schedule.globalBatchTokens
        sequencesPerDevicePerStep = config.sequencesPerStep / devices
        microStepsPerStep = sequencesPerDevicePerStep / config.schedule.microBatch
        stages = zip(config.schedule.stages, config.stepsPerStage).map {
            StagePlan(name: $0.name, steps: $1, tokens: $1 * config.schedule.globalBatchTokens)
        }
        totalTokens = stages.reduce(0) { $0 + $1.tokens }
        flopsPerToken = c.trainingFLOPsPerToken(seqLen: seqLen)
        parameterBytes = 4 * parameters
        gradientBytes = 4 * parameters
        optimizerBytes = 8 * parameters
        let threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
        activationBytes = LlamaModel.activationBytes(config: c, batch: config.schedule.microBatch, seqLen: seqLen)
            + threads * 2 * seqLen * seqLen * 4
        self.deviceMemoryBytes = deviceMemoryBytes
        timeBudgetSeconds = config.run.timeBudgetHours * 3600
        tokensPerSecondPerDevice = tokensPerSecond
    }

    /// The plan as one JSON object (`plan --json`), for scripts: each stage with its first and last global step.
    public var json: [String: Any] {
        var next = 1
        let stageObjects: [[String: Any]] = stages.map { s in
            defer { next += s.steps }
            return ["name": s.name, "steps": s.steps, "tokens": s.tokens, "first_step": next, "last_step": next + s.steps - 1]
        }
        var object: [String: Any] = [
            "parameters": parameters, "devices": devices, "tokens_per_step": tokensPerStep,
            "micro_steps_per_step": microStepsPerStep, "stages": stageObjects,
            "total_steps": stages.reduce(0) { $0 + $1.steps }, "total_tokens": totalTokens,
            "flops_per_token": flopsPerToken, "bytes_per_device": totalBytesPerDevice,
            "device_memory_bytes": deviceMemoryBytes, "time_budget_s": timeBudgetSeconds,
            "required_tokens_per_s_per_device": requiredTokensPerSecondPerDevice,
            "fits_memory": fitsMemory, "fits_time": fitsTime,
        ]
        if let eta = etaSeconds { object["eta_s"] = eta }
        return object
    }

    public var report: String {
        func gb(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / 1e9) }
        var lines: [String] = []
        lines.append("parameters          \(parameters.formatted()) (\(String(format: "%.1f", Double(parameters) / 1e6))M)")
        lines.append("devices             \(devices); \(sequencesPerDevicePerStep) sequences per device per step = \(microStepsPerStep) micro-steps")
        lines.append("tokens per step     \(tokensPerStep.formatted())")
        for s in stages {
            lines.append("stage " + s.name.padding(toLength: 14, withPad: " ", startingAt: 0)
                         + String(format: "%7d steps  ", s.steps) + s.tokens.formatted() + " tokens")
        }
        lines.append("total               \(stages.reduce(0) { $0 + $1.steps }.formatted()) steps, \(totalTokens.formatted()) tokens")
        lines.append(String(format: "FLOPs per token     %.3g (6 x params + 12 x layers x seq_len x dim)", flopsPerToken))
        lines.append("memory per device   params \(gb(parameterBytes)) + grads \(gb(gradientBytes)) + AdamW \(gb(optimizerBytes)) + activations \(gb(activationBytes)) = \(gb(totalBytesPerDevice)) of \(gb(deviceMemoryBytes))\(fitsMemory ? "" : "  DOES NOT FIT")")
        lines.append(String(format: "time budget         %.1f h: each device must sustain %.0f tokens/s (%.2f TFLOP/s)",
                            timeBudgetSeconds / 3600, requiredTokensPerSecondPerDevice, requiredTFLOPsPerDevice))
        if let rate = tokensPerSecondPerDevice, let eta = etaSeconds {
            lines.append(String(format: "at %.0f tokens/s", rate).padding(toLength: 20, withPad: " ", startingAt: 0)
                         + "ETA \(formatDuration(eta)) (\(fitsTime ? "fits the budget" : "EXCEEDS the budget"))")
        }
        lines.append("verdict             \(fitsMemory && fitsTime ? "fits" : "does not fit")")
        return lines.joined(separator: "\n")
    }
}
