import DraftDevice

/// AdamW hyperparameters (the `optimizer:` section of a config, less the schedule).
public struct AdamWHyperparameters: Sendable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// Global gradient-norm clipping threshold; nil or <= 0 disables clipping.
    public var gradClip: Float?

    public init(beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8, weightDecay: Float = 0.1,
                gradClip: Float? = 1.0) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.gradClip = gradClip
    }
}

/// AdamW over a model's flat parameter buffer, with first and second moments in two more flat buffers of the same
/// layout (so checkpoints and a sharded optimizer see contiguous regions too).
public final class AdamW {
    public let model: LlamaModel
    public var hyperparameters: AdamWHyperparameters
    /// First and second moments, laid out like the parameters.
    public let m: DevicePointer<Float>
    public let v: DevicePointer<Float>
    /// Updates applied so far (PyTorch's `state["step"]`); the bias correction uses `step + 1` for the next one.
    public var step: Int = 0

    private let scalar: DevicePointer<Float>
    /// Maximal runs of consecutive tensors sharing a weight-decay rule, so an update is a handful of kernel calls.
    private let decayRuns: [(offset: Int, count: Int, decays: Bool)]

    public init(model: LlamaModel, hyperparameters: AdamWHyperparameters) throws {
        self.model = model
        self.hyperparameters = hyperparameters
        let device = model.device, count = model.layout.count
        m = try device.allocate(Float.self, count: count)
        v = try device.allocate(Float.self, count: count)
        scalar = try device.allocate(Float.self, count: 1)
        var runs: [(offset: Int, count: Int, decays: Bool)] = []
        for slot in model.layout.slots {
            if let last = runs.last, last.decays == slot.decays, last.offset + last.count == slot.offset {
                runs[runs.count - 1].count += slot.count
            } else {
                runs.append((slot.offset, slot.count, slot.decays))
            }
        }
        decayRuns = runs
    }

    deinit {
        model.device.free(m)
        model.device.free(v)
        model.device.free(scalar)
    }

    /// The L2 norm of the whole gradient buffer (NaN or Inf if any gradient is).
    public func gradientNorm() throws -> Float {
        let device = model.device
        try device.sumOfSquares(model.gradients, count: model.layout.count, into: scalar)
        return try device.download(scalar, count: 1)[0].squareRoot()
    }

    /// Clips the gradient to `gradClip` (as `torch.nn.utils.clip_grad_norm_`: scale by `clip / (norm + 1e-6)` when
    /// that is below 1), then applies one AdamW update at learning rate `lr`.
    ///
    /// `gradientScale` is a factor the buffer still needs (the trainer's 1 / global target count): it is folded into
    /// the clipping pass so the gradient is rescaled once, not twice. `gradNorm` is the norm of the buffer as it is
    /// (measured by the caller, who checks it for NaN before stepping). Returns the clip factor applied.
    @discardableResult
    public func update(lr: Float, gradNorm: Float, gradientScale: Float = 1) throws -> Float {
        let device = model.device, h = hyperparameters
        var factor: Float = 1
        if let clip = h.gradClip, clip > 0 {
            factor = min(1, clip / (gradNorm * gradientScale + 1e-6))
        }
        if factor * gradientScale != 1 {
            try device.scale(model.gradients, count: model.layout.count, by: factor * gradientScale)
        }
        step += 1
        for run in decayRuns {
            try device.adamw(params: model.parameters.advanced(by: run.offset),
                             grads: model.gradients.advanced(by: run.offset),
                             m: m.advanced(by: run.offset), v: v.advanced(by: run.offset), count: run.count,
                             lr: lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps,
                             weightDecay: run.decays ? h.weightDecay : 0, step: step)
        }
        return factor
    }
}
