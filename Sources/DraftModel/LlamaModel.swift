import DraftDevice
import DraftErrors
import Foundation

/// A Llama-style decoder with a hand-written forward and backward pass over one flat fp32 parameter buffer and one
/// flat gradient buffer on a `Device`.
///
/// Shapes use llm.c's letters: `B` batch, `T` sequence length, `N = B*T` rows, `C` model width, `QC` query width
/// (`heads * headDim`), `KC` key/value width (`kvHeads * headDim`), `F` feed-forward width, `V` vocabulary.
public final class LlamaModel {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let device: any Device
    /// All parameters, laid out by `layout`.
    public let parameters: DevicePointer<Float>
    /// Gradients, same layout; backward accumulates into it.
    public let gradients: DevicePointer<Float>

    private let ropeCos: DevicePointer<Float>  // (maxSeqLen, headDim/2)
    private let ropeSin: DevicePointer<Float>
    private var activations: Activations?
    private var teacherBuffers: TeacherBuffers?

    /// Rows of the LM head processed at once. The full `(N, V)` logits of a 32k vocabulary would be 260 MB per
    /// micro-batch of 2048 tokens; chunks of about 8M logits bound that to 32 MB at no cost in speed.
    private var headChunkRows: Int { Self.headChunkRows(vocab: config.vocabSize) }

    static func headChunkRows(vocab: Int) -> Int { max(1, min(1024, (8 << 20) / vocab)) }

    /// Bytes of device memory the activations and backward scratch of one `(batch, seqLen)` micro-batch take: exactly
    /// what a training step allocates (the planner's activation figure).
    public static func activationBytes(config c: ModelConfig, batch: Int, seqLen: Int) -> Int {
        let n = batch * seqLen, qc = c.heads * c.headDim, kc = c.kvDim, f = c.ffnDim, d = c.dim
        let headRows = min(headChunkRows(vocab: c.vocabSize), n)
        let perLayer = 3 * n * d + 2 * n + 2 * n * qc + 2 * n * kc + batch * c.heads * seqLen + 3 * n * f
        let floats = (c.layers + 1) * n * d + c.layers * perLayer + n * d + n + headRows * c.vocabSize + headRows
            + 3 * n * d + 2 * n * qc + 2 * n * kc + 3 * n * f
        return 4 * floats + 2 * 4 * n
    }

    public init(config: ModelConfig, device: any Device) throws {
        if let problem = config.firstProblem() {
            throw DeviceError(.invalidArgument, "model.\(problem.key): expected \(problem.expected)")
        }
        self.config = config
        self.layout = ParameterLayout(config)
        self.device = device
        parameters = try device.allocate(Float.self, count: layout.count)
        gradients = try device.allocate(Float.self, count: layout.count)
        // Hugging Face computes the rotary tables in float32; doing the same keeps logits within rounding of it.
        let (cosTable, sinTable) = RotaryTables.tables(
            inverseFrequencies: RotaryTables.inverseFrequencies(theta: config.ropeTheta, headDim: config.headDim),
            positions: config.maxSeqLen)
        ropeCos = try device.upload(cosTable)
        ropeSin = try device.upload(sinTable)
    }

    deinit {
        activations?.free(device)
        teacherBuffers?.free(device)
        device.free(parameters)
        device.free(gradients)
        device.free(ropeCos)
        device.free(ropeSin)
    }

    // MARK: Parameters

    /// Hugging Face's Llama initialisation: matrices ~ N(0, 0.02), RMSNorm weights 1; reproducible from `seed`.
    public func initializeParameters(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var host = [Float](repeating: 0, count: layout.count)
        for slot in layout.slots {
            for i in slot.offset..<(slot.offset + slot.count) {
                host[i] = slot.decays ? Float(0.02 * rng.nextNormal()) : 1
            }
        }
        try setParameters(host)
    }

    public func setParameters(_ values: [Float]) throws {
        guard values.count == layout.count else {
            throw InputError("parameters: expected \(layout.count) values for this model config, got \(values.count)")
        }
        try values.withUnsafeBufferPointer { try device.copyToDevice($0, parameters) }
    }

    public func readParameters() throws -> [Float] { try device.download(parameters, count: layout.count) }
    public func readGradients() throws -> [Float] { try device.download(gradients, count: layout.count) }
    public func zeroGradients() throws { try device.fill(gradients, count: layout.count, value: 0) }

    // MARK: Training step

    /// Forward and backward over one micro-batch of `batch` sequences of `seqLen` tokens.
    ///
    /// Gradients of `lossScale * sum(per-token cross-entropy)` are *added* to `gradients`; targets below 0 are
    /// ignored. `gradientsReady(offset)` is called as soon as every gradient at `offset` and beyond is final for
    /// this micro-batch (for the overlapped all-reduce). Returns the unscaled loss sum and the number of targets.
    @discardableResult
    public func forwardBackward(tokens: [Int32], targets: [Int32], batch: Int, seqLen: Int, lossScale: Float = 1,
                                gradientsReady: ((Int) throws -> Void)? = nil) throws -> (lossSum: Double, targets: Int) {
        let sums = try forwardBackward(tokens: tokens, targets: targets, teacher: nil, loss: .crossEntropy,
                                       batch: batch, seqLen: seqLen, lossScale: lossScale,
                                       gradientsReady: gradientsReady)
        return (sums.loss, sums.targets)
    }

    /// Forward and backward with the token loss `loss`: as above, with the gradients of `lossScale * sum(per-token
    /// loss)`. `teacher` holds the teacher's top-K rows for a distillation loss (nil: every row takes the
    /// cross-entropy). Returns the unscaled sums of the loss and of its cross-entropy and divergence terms.
    public func forwardBackward(tokens: [Int32], targets: [Int32], teacher: TeacherRows?, loss: TokenLoss,
                                batch: Int, seqLen: Int, lossScale: Float = 1,
                                gradientsReady: ((Int) throws -> Void)? = nil) throws -> LossSums {
        let a = try prepare(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen)
        let distillation = try prepareTeacher(teacher, loss: loss, rows: batch * seqLen)
        try forwardToFinalNorm(a)
        var sums = try headAndLoss(a, distillation: distillation, lossScale: lossScale, backward: true)
        try backwardFromFinalNorm(a, gradientsReady: gradientsReady)
        sums.targets = targets.lazy.filter { $0 >= 0 }.count
        if let teacher, distillation != nil {
            sums.teacherRows = (0..<targets.count).lazy.filter { targets[$0] >= 0 && teacher.ids[$0 * teacher.k] >= 0 }.count
        }
        return sums
    }

    /// Loss without gradients (validation): the unscaled loss sum and the number of targets.
    public func evaluate(tokens: [Int32], targets: [Int32], batch: Int, seqLen: Int) throws -> (lossSum: Double, targets: Int) {
        let a = try prepare(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen)
        try forwardToFinalNorm(a)
        let sums = try headAndLoss(a, distillation: nil, lossScale: 0, backward: false)
        return (sums.loss, targets.lazy.filter { $0 >= 0 }.count)
    }

    /// Full `(N, V)` logits, for parity checks and generation.
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        let a = try prepare(tokens: tokens, targets: nil, batch: batch, seqLen: seqLen)
        try forwardToFinalNorm(a)
        let n = batch * seqLen, v = config.vocabSize
        let out = try device.allocate(Float.self, count: n * v)
        defer { device.free(out) }
        try device.gemm(transA: false, transB: true, m: n, n: v, k: config.dim, alpha: 1, a: a.normF, lda: config.dim,
                        b: parameters.advanced(by: layout.head.offset), ldb: config.dim, beta: 0, c: out, ldc: v)
        return try device.download(out, count: n * v)
    }

    // MARK: Passes

    private func prepare(tokens: [Int32], targets: [Int32]?, batch: Int, seqLen: Int) throws -> Activations {
        guard seqLen <= config.maxSeqLen else {
            throw DeviceError(.invalidArgument, "sequence length \(seqLen) exceeds model.max_seq_len \(config.maxSeqLen)")
        }
        guard tokens.count == batch * seqLen, (targets?.count ?? tokens.count) == tokens.count else {
            throw InputError("tokens: expected batch x seq_len = \(batch) x \(seqLen) ids (and as many targets), got \(tokens.count) tokens and \(targets?.count ?? tokens.count) targets")
        }
        if activations?.batch != batch || activations?.seqLen != seqLen {
            activations?.free(device)
            activations = nil
            activations = try Activations(config: config, batch: batch, seqLen: seqLen,
                                          headRows: headChunkRows, device: device)
        }
        let a = activations.unsafelyUnwrapped
        try tokens.withUnsafeBufferPointer { try device.copyToDevice($0, a.tokens) }
        if let targets {
            if let bad = targets.firstIndex(where: { Int($0) >= config.vocabSize }) {
                throw DeviceError(.invalidArgument, "target id \(targets[bad]) at position \(bad) is not below model.vocab_size \(config.vocabSize)")
            }
            try targets.withUnsafeBufferPointer { try device.copyToDevice($0, a.targets) }
        }
        return a
    }

    private func weight(_ slot: TensorSlot) -> DevicePointer<Float> { parameters.advanced(by: slot.offset) }
    private func grad(_ slot: TensorSlot) -> DevicePointer<Float> { gradients.advanced(by: slot.offset) }

    /// `y = x W^T` for a Hugging Face `Linear` weight `W` of shape `(out, in)`.
    private func linear(_ x: DevicePointer<Float>, _ w: TensorSlot, _ y: DevicePointer<Float>, rows: Int,
                        accumulate: Bool = false) throws {
        let out = w.shape[0], inner = w.shape[1]
        try device.gemm(transA: false, transB: true, m: rows, n: out, k: inner, alpha: 1, a: x, lda: inner,
                        b: weight(w), ldb: inner, beta: accumulate ? 1 : 0, c: y, ldc: out)
    }

    /// Backward of `y = x W^T`: `dX (=|+=) dY W` and `dW += dY^T X`.
    private func linearBackward(_ dY: DevicePointer<Float>, _ x: DevicePointer<Float>, _ w: TensorSlot,
                                dX: DevicePointer<Float>, rows: Int, accumulateInput: Bool) throws {
        let out = w.shape[0], inner = w.shape[1]
        try device.gemm(transA: false, transB: false, m: rows, n: inner, k: out, alpha: 1, a: dY, lda: out,
                        b: weight(w), ldb: inner, beta: accumulateInput ? 1 : 0, c: dX, ldc: inner)
        try device.gemm(transA: true, transB: false, m: out, n: inner, k: rows, alpha: 1, a: dY, lda: out,
                        b: x, ldb: inner, beta: 1, c: grad(w), ldc: inner)
    }

    private func forwardToFinalNorm(_ a: Activations) throws {
        let c = config, n = a.rows, eps = Float(c.normEps)
        try device.embeddingForward(tokens: a.tokens, table: weight(layout.embedding), out: a.residual[0],
                                    count: n, dim: c.dim, vocab: c.vocabSize)
        for (l, w) in layout.layers.enumerated() {
            let s = a.layers[l]
            try device.rmsNormForward(x: a.residual[l], weight: weight(w.inputNorm), out: s.norm1, rstd: s.rstd1,
                                      rows: n, dim: c.dim, eps: eps)
            try linear(s.norm1, w.q, s.q, rows: n)
            try linear(s.norm1, w.k, s.k, rows: n)
            try linear(s.norm1, w.v, s.v, rows: n)
            try device.rotaryEmbedding(x: s.q, cos: ropeCos, sin: ropeSin, batch: a.batch, seqLen: a.seqLen,
                                       heads: c.heads, headDim: c.headDim, inverse: false)
            try device.rotaryEmbedding(x: s.k, cos: ropeCos, sin: ropeSin, batch: a.batch, seqLen: a.seqLen,
                                       heads: c.kvHeads, headDim: c.headDim, inverse: false)
            try device.attentionForward(q: s.q, k: s.k, v: s.v, out: s.attention, lse: s.lse, batch: a.batch,
                                        seqLen: a.seqLen, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            try linear(s.attention, w.o, a.scratchC, rows: n)
            try device.add(a.residual[l], a.scratchC, s.residualMid, count: n * c.dim)
            try device.rmsNormForward(x: s.residualMid, weight: weight(w.postNorm), out: s.norm2, rstd: s.rstd2,
                                      rows: n, dim: c.dim, eps: eps)
            try linear(s.norm2, w.gate, s.gate, rows: n)
            try linear(s.norm2, w.up, s.up, rows: n)
            try device.swigluForward(gate: s.gate, up: s.up, out: s.act, count: n * c.ffnDim)
            try linear(s.act, w.down, a.scratchC, rows: n)
            try device.add(s.residualMid, a.scratchC, a.residual[l + 1], count: n * c.dim)
        }
        try device.rmsNormForward(x: a.residual[c.layers], weight: weight(layout.finalNorm), out: a.normF,
                                  rstd: a.rstdF, rows: n, dim: c.dim, eps: eps)
    }

    /// The teacher rows on the device for a distillation loss, or nil when every row takes the cross-entropy.
    private func prepareTeacher(_ teacher: TeacherRows?, loss: TokenLoss, rows: Int) throws -> DistillationInputs? {
        guard case let .distillation(divergence, kdWeight) = loss, let teacher else { return nil }
        guard teacher.k > 0, teacher.ids.count == rows * teacher.k, teacher.logprobs.count == rows * teacher.k else {
            throw InputError("teacher rows: expected \(rows) x k = \(teacher.k) ids and log-probs, got \(teacher.ids.count) and \(teacher.logprobs.count)")
        }
        if teacherBuffers?.rows != rows || teacherBuffers?.k != teacher.k {
            teacherBuffers?.free(device)
            teacherBuffers = nil
            teacherBuffers = try TeacherBuffers(rows: rows, k: teacher.k, headRows: min(headChunkRows, rows),
                                                device: device)
        }
        let buffers = teacherBuffers.unsafelyUnwrapped
        try teacher.ids.withUnsafeBufferPointer { try device.copyToDevice($0, buffers.ids) }
        try teacher.logprobs.withUnsafeBufferPointer { try device.copyToDevice($0, buffers.logprobs) }
        return DistillationInputs(buffers: buffers, divergence: divergence, kdWeight: kdWeight)
    }

    /// LM head and loss in row chunks (cross-entropy, or the distillation loss when `distillation` is given); with
    /// `backward`, also `dNormF` (into `a.dNorm`) and the head's weight gradient. Returns the loss sums (`targets`
    /// and `teacherRows` left to the caller).
    private func headAndLoss(_ a: Activations, distillation: DistillationInputs?, lossScale: Float,
                             backward: Bool) throws -> LossSums {
        let c = config.dim, v = config.vocabSize, n = a.rows
        var sums = LossSums()
        var losses = [Float](repeating: 0, count: a.headRows)
        var start = 0
        while start < n {
            let rows = min(a.headRows, n - start)
            let x = a.normF.advanced(by: start * c)
            try linear(x, layout.head, a.logits, rows: rows)
            if let d = distillation {
                let k = d.buffers.k
                try device.distillationLossForwardBackward(
                    logits: a.logits, targets: a.targets.advanced(by: start),
                    teacherIds: d.buffers.ids.advanced(by: start * k),
                    teacherLogprobs: d.buffers.logprobs.advanced(by: start * k), losses: a.losses,
                    ceLosses: d.buffers.ceLosses, kdLosses: d.buffers.kdLosses, rows: rows, vocab: v, topK: k,
                    divergence: d.divergence, kdWeight: d.kdWeight, lossScale: lossScale)
                sums.crossEntropy += try sum(d.buffers.ceLosses, rows: rows, scratch: &losses)
                sums.divergence += try sum(d.buffers.kdLosses, rows: rows, scratch: &losses)
                sums.loss += try sum(a.losses, rows: rows, scratch: &losses)
            } else {
                try device.crossEntropyForwardBackward(logits: a.logits, targets: a.targets.advanced(by: start),
                                                       losses: a.losses, rows: rows, vocab: v, lossScale: lossScale)
                sums.loss += try sum(a.losses, rows: rows, scratch: &losses)
                sums.crossEntropy = sums.loss
            }
            if backward {
                try linearBackward(a.logits, x, layout.head, dX: a.dNorm.advanced(by: start * c), rows: rows,
                                   accumulateInput: false)
            }
            start += rows
        }
        return sums
    }

    /// The sum of `rows` per-row losses on the device, read back through `scratch`.
    private func sum(_ values: DevicePointer<Float>, rows: Int, scratch: inout [Float]) throws -> Double {
        try scratch.withUnsafeMutableBufferPointer {
            try device.copyToHost(values, UnsafeMutableBufferPointer(rebasing: $0[0..<rows]))
        }
        var total = 0.0
        for r in 0..<rows { total += Double(scratch[r]) }
        return total
    }

    private func backwardFromFinalNorm(_ a: Activations, gradientsReady: ((Int) throws -> Void)?) throws {
        let c = config, n = a.rows
        try device.fill(a.dResidual, count: n * c.dim, value: 0)
        try device.rmsNormBackward(dOut: a.dNorm, x: a.residual[c.layers], weight: weight(layout.finalNorm),
                                   rstd: a.rstdF, dX: a.dResidual, dWeight: grad(layout.finalNorm),
                                   rows: n, dim: c.dim)
        try gradientsReady?(layout.finalNorm.offset)
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let w = layout.layers[l], s = a.layers[l]
            // MLP: residual[l+1] = residualMid + down(silu(gate(norm2)) * up(norm2))
            try linearBackward(a.dResidual, s.act, w.down, dX: a.dAct, rows: n, accumulateInput: false)
            try device.swigluBackward(dOut: a.dAct, gate: s.gate, up: s.up, dGate: a.dGate, dUp: a.dUp,
                                      count: n * c.ffnDim)
            try linearBackward(a.dGate, s.norm2, w.gate, dX: a.dNorm, rows: n, accumulateInput: false)
            try linearBackward(a.dUp, s.norm2, w.up, dX: a.dNorm, rows: n, accumulateInput: true)
            try device.rmsNormBackward(dOut: a.dNorm, x: s.residualMid, weight: weight(w.postNorm), rstd: s.rstd2,
                                       dX: a.dResidual, dWeight: grad(w.postNorm), rows: n, dim: c.dim)
            // Attention: residualMid = residual[l] + o(attention(rope(q), rope(k), v))
            try linearBackward(a.dResidual, s.attention, w.o, dX: a.dAttention, rows: n, accumulateInput: false)
            try device.attentionBackward(dOut: a.dAttention, q: s.q, k: s.k, v: s.v, out: s.attention, lse: s.lse,
                                         dQ: a.dQ, dK: a.dK, dV: a.dV, batch: a.batch, seqLen: a.seqLen,
                                         heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            try device.rotaryEmbedding(x: a.dQ, cos: ropeCos, sin: ropeSin, batch: a.batch, seqLen: a.seqLen,
                                       heads: c.heads, headDim: c.headDim, inverse: true)
            try device.rotaryEmbedding(x: a.dK, cos: ropeCos, sin: ropeSin, batch: a.batch, seqLen: a.seqLen,
                                       heads: c.kvHeads, headDim: c.headDim, inverse: true)
            try linearBackward(a.dQ, s.norm1, w.q, dX: a.dNorm, rows: n, accumulateInput: false)
            try linearBackward(a.dK, s.norm1, w.k, dX: a.dNorm, rows: n, accumulateInput: true)
            try linearBackward(a.dV, s.norm1, w.v, dX: a.dNorm, rows: n, accumulateInput: true)
            try device.rmsNormBackward(dOut: a.dNorm, x: a.residual[l], weight: weight(w.inputNorm), rstd: s.rstd1,
                                       dX: a.dResidual, dWeight: grad(w.inputNorm), rows: n, dim: c.dim)
            try gradientsReady?(w.inputNorm.offset)
        }
        try device.embeddingBackward(tokens: a.tokens, dOut: a.dResidual, dTable: grad(layout.embedding),
                                     count: n, dim: c.dim, vocab: c.vocabSize)
        try gradientsReady?(0)
    }
}

/// Everything a forward pass keeps for its backward pass, plus backward scratch, for one `(B, T)` shape.
private final class Activations {
    struct Layer {
        let norm1, rstd1, q, k, v, attention, lse, residualMid, norm2, rstd2, gate, up, act: DevicePointer<Float>
    }

    let batch, seqLen, rows, headRows: Int
    let tokens, targets: DevicePointer<Int32>
    /// `residual[l]` is layer l's input (`residual[0]` the embeddings, `residual[layers]` the final norm's input).
    let residual: [DevicePointer<Float>]
    let layers: [Layer]
    let normF, rstdF, logits, losses: DevicePointer<Float>
    let scratchC, dResidual, dNorm, dAttention, dQ, dK, dV, dAct, dGate, dUp: DevicePointer<Float>
    private var owned: [DevicePointer<Float>] = []

    init(config c: ModelConfig, batch: Int, seqLen: Int, headRows: Int, device: any Device) throws {
        self.batch = batch
        self.seqLen = seqLen
        let n = batch * seqLen
        rows = n
        self.headRows = min(headRows, n)
        let qc = c.heads * c.headDim, kc = c.kvDim
        var owned: [DevicePointer<Float>] = []
        func buffer(_ count: Int) throws -> DevicePointer<Float> {
            let p = try device.allocate(Float.self, count: count)
            owned.append(p)
            return p
        }
        do {
            tokens = try device.allocate(Int32.self, count: n)
            targets = try device.allocate(Int32.self, count: n)
            residual = try (0...c.layers).map { _ in try buffer(n * c.dim) }
            layers = try (0..<c.layers).map { _ in
                Layer(norm1: try buffer(n * c.dim), rstd1: try buffer(n), q: try buffer(n * qc), k: try buffer(n * kc),
                      v: try buffer(n * kc), attention: try buffer(n * qc), lse: try buffer(batch * c.heads * seqLen),
                      residualMid: try buffer(n * c.dim), norm2: try buffer(n * c.dim), rstd2: try buffer(n),
                      gate: try buffer(n * c.ffnDim), up: try buffer(n * c.ffnDim), act: try buffer(n * c.ffnDim))
            }
            normF = try buffer(n * c.dim)
            rstdF = try buffer(n)
            logits = try buffer(self.headRows * c.vocabSize)
            losses = try buffer(self.headRows)
            scratchC = try buffer(n * c.dim)
            dResidual = try buffer(n * c.dim)
            dNorm = try buffer(n * c.dim)
            dAttention = try buffer(n * qc)
            dQ = try buffer(n * qc)
            dK = try buffer(n * kc)
            dV = try buffer(n * kc)
            dAct = try buffer(n * c.ffnDim)
            dGate = try buffer(n * c.ffnDim)
            dUp = try buffer(n * c.ffnDim)
        } catch {
            owned.forEach { device.free($0) }
            throw error
        }
        self.owned = owned
    }

    func free(_ device: any Device) {
        owned.forEach { device.free($0) }
        device.free(tokens)
        device.free(targets)
        owned = []
    }
}

/// A distillation loss's device inputs for one forward-backward.
private struct DistillationInputs {
    let buffers: TeacherBuffers
    let divergence: Divergence
    let kdWeight: Float
}

/// The teacher's top-K rows of one micro-batch on the device, `(N, k)`, and the per-row loss terms of one head chunk.
private final class TeacherBuffers {
    let rows, k: Int
    let ids: DevicePointer<Int32>
    let logprobs, ceLosses, kdLosses: DevicePointer<Float>

    init(rows: Int, k: Int, headRows: Int, device: any Device) throws {
        self.rows = rows
        self.k = k
        ids = try device.allocate(Int32.self, count: rows * k)
        var made: [DevicePointer<Float>] = []
        do {
            for count in [rows * k, headRows, headRows] { made.append(try device.allocate(Float.self, count: count)) }
        } catch {
            device.free(ids)
            made.forEach { device.free($0) }
            throw error
        }
        logprobs = made[0]
        ceLosses = made[1]
        kdLosses = made[2]
    }

    func free(_ device: any Device) {
        device.free(ids)
        [logprobs, ceLosses, kdLosses].forEach { device.free($0) }
    }
}
