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
    private var subsetHead: SubsetHead?

    /// The token ids the LM head scores when `config.head_vocab` is set (ascending; see `setHeadIDs`), else nil.
    public var headIDs: [Int32]? { subsetHead?.ids }
    private var teacherBuffers: TeacherBuffers?

    /// Rows of the LM head processed at once. The full `(N, V)` logits of a 32k vocabulary would be 260 MB per
    /// micro-batch of 2048 tokens; chunks of about 8M logits bound that to 32 MB at no cost in speed.
    private var headChunkRows: Int { Self.headChunkRows(vocab: config.headSize) }

    static func headChunkRows(vocab: Int) -> Int { max(1, min(1024, (8 << 20) / vocab)) }

    /// Bytes of device memory the activations and backward scratch of one `(batch, seqLen)` micro-batch take: exactly
    /// what a training step allocates (the planner's activation figure).
    public static func activationBytes(config c: ModelConfig, batch: Int, seqLen: Int) -> Int {
        let n = batch * seqLen, qc = c.heads * c.headDim, kc = c.kvDim, f = c.ffnDim, d = c.dim
        let headRows = min(headChunkRows(vocab: c.headSize), n)
        let perLayer = 3 * n * d + 2 * n + 2 * n * qc + 2 * n * kc + batch * c.heads * seqLen + 3 * n * f
        let subsetHead = c.headSize < c.vocabSize ? 2 * c.headSize * d + c.headSize / 2 : 0
        let floats = (c.layers + 1) * n * d + c.layers * perLayer + n * d + n + headRows * c.headSize + headRows
            + 3 * n * d + 2 * n * qc + 2 * n * kc + 3 * n * f + subsetHead
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
        subsetHead?.free(device)
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
        sums.targets = a.lossTargets
        if let d = distillation {
            // Rows whose target the head scores and with at least one teacher entry it scores.
            let k = d.buffers.k, index = subsetHead?.compact?.index
            sums.teacherRows = (0..<targets.count).lazy.filter { r in
                let target = targets[r] < 0 ? -1 : index.map { $0[Int(targets[r])] } ?? targets[r]
                return target >= 0 && d.ids[(r * k)..<(r * k + k)].contains { $0 >= 0 }
            }.count
        }
        return sums
    }

    /// Loss without gradients (validation): the unscaled loss sum and the number of targets.
    public func evaluate(tokens: [Int32], targets: [Int32], batch: Int, seqLen: Int) throws -> (lossSum: Double, targets: Int) {
        let a = try prepare(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen)
        try forwardToFinalNorm(a)
        let sums = try headAndLoss(a, distillation: nil, lossScale: 0, backward: false)
        return (sums.loss, a.lossTargets)
    }

    /// Full `(N, V)` logits, for parity checks and generation. With a subset head, ids outside it get `-inf`
    /// (probability 0), which is what the draft's distribution is.
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        let a = try prepare(tokens: tokens, targets: nil, batch: batch, seqLen: seqLen)
        try forwardToFinalNorm(a)
        let n = batch * seqLen, v = config.vocabSize, k = config.headSize
        let head = try headWeights()
        let out = try device.allocate(Float.self, count: n * k)
        defer { device.free(out) }
        try device.gemm(transA: false, transB: true, m: n, n: k, k: config.dim, alpha: 1, a: a.normF, lda: config.dim,
                        b: head, ldb: config.dim, beta: 0, c: out, ldc: k)
        let scored = try device.download(out, count: n * k)
        guard let subset = subsetHead, subset.compact != nil else { return scored }
        var full = [Float](repeating: -.infinity, count: n * v)
        for r in 0..<n {
            for (j, id) in subset.ids.enumerated() { full[r * v + Int(id)] = scored[r * k + j] }
        }
        return full
    }

    // MARK: Subset head

    /// Sets the ids the LM head scores (`config.head_vocab` of them): strictly ascending, each below `vocab_size`.
    /// Ascending order makes the full vocabulary the identity, for which the head is exactly the ordinary one.
    public func setHeadIDs(_ ids: [Int32]) throws {
        guard let k = config.headVocab else {
            throw InputError("head ids: the model has no model.head_vocab, so its head scores the whole vocabulary")
        }
        guard ids.count == k else {
            throw InputError("head ids: expected model.head_vocab = \(k) ids, got \(ids.count)")
        }
        for (i, id) in ids.enumerated() where id < 0 || Int(id) >= config.vocabSize || (i > 0 && id <= ids[i - 1]) {
            throw InputError("head ids: expected strictly ascending ids below model.vocab_size \(config.vocabSize), got \(id) at index \(i)")
        }
        subsetHead?.free(device)
        subsetHead = nil
        subsetHead = try SubsetHead(ids: ids, vocab: config.vocabSize, dim: config.dim, device: device)
    }

    /// The `(K, C)` head the products use: the head tensor itself for the full vocabulary (or all of it in order),
    /// else the subset's rows gathered into the compact copy (re-gathered on every call: the parameters change
    /// between steps).
    private func headWeights() throws -> DevicePointer<Float> {
        guard config.headVocab != nil else { return weight(layout.head) }
        guard let subset = subsetHead else {
            throw InputError("model.head_vocab is \(config.headSize) but no head ids were set (they come from the run's ranking or its checkpoint)")
        }
        guard let compact = subset.compact else { return weight(layout.head) }
        try device.embeddingForward(tokens: compact.ids, table: weight(layout.head), out: compact.weight,
                                    count: subset.ids.count, dim: config.dim, vocab: config.vocabSize)
        return compact.weight
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
            let valid = targets.lazy.filter { $0 >= 0 }.count
            if let index = subsetHead?.compact?.index {
                // Targets become positions in the subset; one outside it is ignored like a masked target.
                let local = targets.map { $0 < 0 ? $0 : index[Int($0)] }
                a.lossTargets = local.lazy.filter { $0 >= 0 }.count
                try local.withUnsafeBufferPointer { try device.copyToDevice($0, a.targets) }
            } else {
                a.lossTargets = valid
                try targets.withUnsafeBufferPointer { try device.copyToDevice($0, a.targets) }
            }
            lastOutsideHeadTargets = valid - a.lossTargets
        }
        return a
    }

    /// Targets of the last `forwardBackward` or `evaluate` that were left out of the loss because the subset head
    /// does not score them (0 with a full head); the returned target count excludes them.
    public private(set) var lastOutsideHeadTargets = 0

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
        // The teacher's top-K ids are vocabulary ids and a subset head's logits are positions in the subset: the ids
        // are mapped there, and one the head lacks becomes an absent entry (-1), its teacher mass joining the rest
        // bucket of the divergence (the student's mass outside the scored entries).
        var ids = teacher.ids
        if let index = subsetHead?.compact?.index {
            if let bad = ids.firstIndex(where: { Int($0) >= config.vocabSize }) {
                throw InputError("teacher id \(ids[bad]) at \(bad) is not below model.vocab_size \(config.vocabSize)")
            }
            ids = ids.map { $0 < 0 ? -1 : index[Int($0)] }
        }
        if teacherBuffers?.rows != rows || teacherBuffers?.k != teacher.k {
            teacherBuffers?.free(device)
            teacherBuffers = nil
            teacherBuffers = try TeacherBuffers(rows: rows, k: teacher.k, headRows: min(headChunkRows, rows),
                                                device: device)
        }
        let buffers = teacherBuffers.unsafelyUnwrapped
        try ids.withUnsafeBufferPointer { try device.copyToDevice($0, buffers.ids) }
        try teacher.logprobs.withUnsafeBufferPointer { try device.copyToDevice($0, buffers.logprobs) }
        return DistillationInputs(buffers: buffers, divergence: divergence, kdWeight: kdWeight, ids: ids)
    }

    /// LM head and loss in row chunks (cross-entropy, or the distillation loss when `distillation` is given); with
    /// `backward`, also `dNormF` (into `a.dNorm`) and the head's weight gradient. A subset head multiplies by its
    /// gathered `(K, C)` rows and scatter-adds their gradient into the head tensor's rows once, after the last chunk.
    /// Returns the loss sums (`targets` and `teacherRows` left to the caller).
    private func headAndLoss(_ a: Activations, distillation: DistillationInputs?, lossScale: Float,
                             backward: Bool) throws -> LossSums {
        let c = config.dim, v = config.headSize, n = a.rows
        let head = try headWeights()
        let compact = subsetHead?.compact
        let headGrad = compact?.gradient ?? grad(layout.head)
        if backward, compact != nil { try device.fill(headGrad, count: v * c, value: 0) }
        var sums = LossSums()
        var losses = [Float](repeating: 0, count: a.headRows)
        var start = 0
        while start < n {
            let rows = min(a.headRows, n - start)
            let x = a.normF.advanced(by: start * c)
            try device.gemm(transA: false, transB: true, m: rows, n: v, k: c, alpha: 1, a: x, lda: c,
                            b: head, ldb: c, beta: 0, c: a.logits, ldc: v)
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
                // linearBackward's two products, against the (possibly gathered) head and its gradient.
                try device.gemm(transA: false, transB: false, m: rows, n: c, k: v, alpha: 1, a: a.logits, lda: v,
                                b: head, ldb: c, beta: 0, c: a.dNorm.advanced(by: start * c), ldc: c)
                try device.gemm(transA: true, transB: false, m: v, n: c, k: rows, alpha: 1, a: a.logits, lda: v,
                                b: x, ldb: c, beta: 1, c: headGrad, ldc: c)
            }
            start += rows
        }
        if backward, let compact {
            try device.embeddingBackward(tokens: compact.ids, dOut: compact.gradient, dTable: grad(layout.head),
                                         count: v, dim: c, vocab: config.vocabSize)
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
    /// How many of the current batch's targets the loss takes (not masked, and inside a subset head).
    var lossTargets = 0
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
            logits = try buffer(self.headRows * c.headSize)
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

/// A subset head's ids and, unless they are the whole vocabulary in order, its device buffers.
private final class SubsetHead {
    struct Compact {
        let ids: DevicePointer<Int32>          // (K)
        let weight, gradient: DevicePointer<Float>  // (K, C) each: gathered head rows and their gradient
        /// Vocabulary id to position in the subset, -1 outside it (host side, for mapping targets).
        let index: [Int32]
    }

    let ids: [Int32]
    /// nil when `ids` is `0..<V`: gather and scatter would be exact copies, so the ordinary head runs instead and the
    /// result is bit-identical to a model without `head_vocab`.
    let compact: Compact?

    init(ids: [Int32], vocab: Int, dim: Int, device: any Device) throws {
        self.ids = ids
        guard ids.count < vocab else {
            compact = nil
            return
        }
        var index = [Int32](repeating: -1, count: vocab)
        for (j, id) in ids.enumerated() { index[Int(id)] = Int32(j) }
        let idsOnDevice = try device.upload(ids)
        do {
            let weight = try device.allocate(Float.self, count: ids.count * dim)
            do {
                let gradient = try device.allocate(Float.self, count: ids.count * dim)
                compact = Compact(ids: idsOnDevice, weight: weight, gradient: gradient, index: index)
            } catch {
                device.free(weight)
                throw error
            }
        } catch {
            device.free(idsOnDevice)
            throw error
        }
    }

    func free(_ device: any Device) {
        guard let compact else { return }
        device.free(compact.ids)
        device.free(compact.weight)
        device.free(compact.gradient)
    }
}

/// A distillation loss's device inputs for one forward-backward.
private struct DistillationInputs {
    let buffers: TeacherBuffers
    let divergence: Divergence
    let kdWeight: Float
    /// The teacher ids as the kernel sees them: positions in a subset head (-1 where the head lacks the id).
    let ids: [Int32]
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
