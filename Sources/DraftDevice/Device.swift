import DraftErrors

/// An address in a device's memory holding elements of `Element`.
///
/// The model and trainer only ever pass these to a `Device`; they never dereference them. On the CPU backend the
/// address is a host pointer; on the HPU backend it is a plugin's device address (validated by the plugin).
public struct DevicePointer<Element>: Hashable, Sendable {
    public let address: UInt64

    public init(address: UInt64) { self.address = address }

    /// The pointer `count` elements further on.
    @inlinable
    public func advanced(by count: Int) -> DevicePointer<Element> {
        DevicePointer(address: address &+ UInt64(count * MemoryLayout<Element>.stride))
    }
}

/// A failure reported by a device: out of memory, a rejected address, a plugin error.
///
/// Out of memory, a rejected argument and an unusable plugin are the user's to fix (the config, the plugin path):
/// bad input, exit 2. An operation the backend lacks and a non-finite kernel output are runtime failures.
public struct DeviceError: BadInputError, Sendable {
    public enum Kind: Sendable {
        case outOfMemory, invalidArgument, plugin, unsupported
        /// A kernel produced NaN or Inf (reported by `InstrumentedDevice` under `--debug`): a runtime failure.
        case nonFinite
    }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public var isBadInput: Bool {
        switch kind {
        case .outOfMemory, .invalidArgument, .plugin: return true
        case .unsupported, .nonFinite: return false
        }
    }
}

/// A compute device: memory plus the fp32 kernels a Llama-style decoder needs, forward and backward.
///
/// Conventions, shared by every backend:
/// - Matrices are row-major. Activations are `(N, C)` with `N = batch * seqLen` rows, the sequence index fastest
///   after the feature index, i.e. `[b][t][c]`.
/// - Kernels may run asynchronously in issue order; `copyToHost` and `synchronize` wait for everything issued before.
/// - Backward kernels document whether they overwrite or accumulate (`+=`) into their gradient outputs.
///   Parameter gradients always accumulate, so gradient accumulation over micro-batches needs no extra work.
public protocol Device: AnyObject, DecodeKernels {
    /// A human-readable name, e.g. `cpu (2 threads, OpenBLAS)` or `hpu:3 (stub plugin /path)`.
    var name: String { get }

    // MARK: Backend facts (defaults below suit a discrete accelerator without counters)

    /// The memory at `pointer` as a host buffer of `count` elements when this backend's memory is host memory (the
    /// CPU), so a caller may read and write it in place (after `synchronize()`); nil when it must be staged with
    /// `copyToHost`/`copyToDevice`. Valid while the allocation lives.
    func hostBuffer<T>(_ pointer: DevicePointer<T>, count: Int) -> UnsafeMutableBufferPointer<T>?
    /// Bytes copied host to device and device to host since the device was made, where copies cross a boundary
    /// worth counting; nil where they do not.
    var transferCounters: (toDevice: UInt64, toHost: UInt64)? { get }
    /// The accelerator module this process drives; nil for the CPU.
    var moduleIndex: Int? { get }
    /// Host cores the kernels keep busy while they run: the CPU backend's threads, 0 for an accelerator (whose
    /// host thread mostly waits). Decides whether a communication progress thread finds an idle core.
    var hostComputeThreads: Int { get }

    // MARK: Memory

    /// Allocates `count` zero-filled elements. Throws `DeviceError(.outOfMemory)` naming the bytes asked and free.
    func allocate<T>(_ type: T.Type, count: Int) throws -> DevicePointer<T>
    /// Frees an allocation made by `allocate`.
    func free<T>(_ pointer: DevicePointer<T>)
    /// Host to device. The host buffer may be reused as soon as this returns.
    func copyToDevice<T>(_ source: UnsafeBufferPointer<T>, _ destination: DevicePointer<T>) throws
    /// Device to host; waits for all kernels issued before it.
    func copyToHost<T>(_ source: DevicePointer<T>, _ destination: UnsafeMutableBufferPointer<T>) throws
    /// Device to device, `count` elements.
    func copy<T>(_ source: DevicePointer<T>, _ destination: DevicePointer<T>, count: Int) throws
    /// Waits for all issued work.
    func synchronize() throws

    // MARK: Elementwise and reductions

    /// `x[i] = value`
    func fill(_ x: DevicePointer<Float>, count: Int, value: Float) throws
    /// `x[i] *= alpha`
    func scale(_ x: DevicePointer<Float>, count: Int, by alpha: Float) throws
    /// `y[i] += alpha * x[i]`
    func axpy(_ alpha: Float, _ x: DevicePointer<Float>, _ y: DevicePointer<Float>, count: Int) throws
    /// `out[i] = a[i] + b[i]` (`out` may alias `a` or `b`).
    func add(_ a: DevicePointer<Float>, _ b: DevicePointer<Float>, _ out: DevicePointer<Float>, count: Int) throws
    /// `result[0] = sum(x[i]^2)`, accumulated in double precision; NaN/Inf propagate.
    func sumOfSquares(_ x: DevicePointer<Float>, count: Int, into result: DevicePointer<Float>) throws

    // MARK: Matrix product

    /// `C = alpha * op(A) * op(B) + beta * C`, row-major, `op(A)` is `m x k`, `op(B)` is `k x n`.
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
              alpha: Float, a: DevicePointer<Float>, lda: Int,
              b: DevicePointer<Float>, ldb: Int,
              beta: Float, c: DevicePointer<Float>, ldc: Int) throws

    // MARK: Model kernels

    /// `out[i, :] = table[tokens[i], :]` for `count` tokens of width `dim`. Ids outside the table are an error.
    func embeddingForward(tokens: DevicePointer<Int32>, table: DevicePointer<Float>, out: DevicePointer<Float>,
                          count: Int, dim: Int, vocab: Int) throws
    /// `dTable[tokens[i], :] += dOut[i, :]` (scatter-add; repeated ids accumulate).
    func embeddingBackward(tokens: DevicePointer<Int32>, dOut: DevicePointer<Float>, dTable: DevicePointer<Float>,
                           count: Int, dim: Int, vocab: Int) throws

    /// RMSNorm over rows of width `dim`: `out = x * rstd * weight`, `rstd[r] = 1 / sqrt(mean(x[r]^2) + eps)` (saved).
    func rmsNormForward(x: DevicePointer<Float>, weight: DevicePointer<Float>, out: DevicePointer<Float>,
                        rstd: DevicePointer<Float>, rows: Int, dim: Int, eps: Float) throws
    /// RMSNorm backward: `dX += ...` (accumulates, so residual gradients merge for free) and `dWeight += ...`.
    func rmsNormBackward(dOut: DevicePointer<Float>, x: DevicePointer<Float>, weight: DevicePointer<Float>,
                         rstd: DevicePointer<Float>, dX: DevicePointer<Float>, dWeight: DevicePointer<Float>,
                         rows: Int, dim: Int) throws

    /// Rotary embedding in place on `x` laid out `(batch, seqLen, heads, headDim)`, position = t, in Hugging Face's
    /// half-split layout (pairs `i` and `i + headDim/2`). `cos`/`sin` are `(maxSeqLen, headDim/2)` tables.
    /// `inverse` rotates by the negative angle, which is the backward pass.
    func rotaryEmbedding(x: DevicePointer<Float>, cos: DevicePointer<Float>, sin: DevicePointer<Float>,
                         batch: Int, seqLen: Int, heads: Int, headDim: Int, inverse: Bool) throws

    /// Causal scaled-dot-product attention with grouped KV heads (query head h reads KV head h / (heads/kvHeads)).
    /// `q`, `out`: `(batch, seqLen, heads, headDim)`; `k`, `v`: `(batch, seqLen, kvHeads, headDim)`;
    /// `lse`: `(batch, heads, seqLen)` row log-sum-exp of the scaled scores, saved for the backward pass.
    func attentionForward(q: DevicePointer<Float>, k: DevicePointer<Float>, v: DevicePointer<Float>,
                          out: DevicePointer<Float>, lse: DevicePointer<Float>,
                          batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) throws
    /// Attention backward; overwrites `dQ`, `dK`, `dV` (the probabilities are recomputed from `lse`).
    func attentionBackward(dOut: DevicePointer<Float>, q: DevicePointer<Float>, k: DevicePointer<Float>,
                           v: DevicePointer<Float>, out: DevicePointer<Float>, lse: DevicePointer<Float>,
                           dQ: DevicePointer<Float>, dK: DevicePointer<Float>, dV: DevicePointer<Float>,
                           batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) throws

    /// `out = silu(gate) * up`
    func swigluForward(gate: DevicePointer<Float>, up: DevicePointer<Float>, out: DevicePointer<Float>,
                       count: Int) throws
    /// Overwrites `dGate` and `dUp`.
    func swigluBackward(dOut: DevicePointer<Float>, gate: DevicePointer<Float>, up: DevicePointer<Float>,
                        dGate: DevicePointer<Float>, dUp: DevicePointer<Float>, count: Int) throws

    /// Fused softmax cross-entropy over `rows` rows of `vocab` logits, in place: `losses[r] = logsumexp - logit[target]`
    /// and the logits are replaced by `lossScale * (softmax - onehot(target))`. A negative target is ignored
    /// (loss 0, gradient 0). Targets `>= vocab` are an error.
    func crossEntropyForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                     losses: DevicePointer<Float>, rows: Int, vocab: Int, lossScale: Float) throws

    /// Fused token-level distillation loss over `rows` rows of `vocab` logits, in place, like
    /// `crossEntropyForwardBackward`: the logits are replaced by `lossScale * d(losses[r])/d(logits)`.
    ///
    /// Row r has the data target `targets[r]` and the teacher's top-`topK` ids `teacherIds[r, :]` with log-probs
    /// `l_i = teacherLogprobs[r, i]`, `p_i = exp(l_i)`, `p_rest = max(0, 1 - sum p_i)`. With the student's
    /// `q = softmax(logits[r])`, `q_i = q[t_i]` and `q_rest = max(sum of q outside the top-K, tiny)` (summed over the
    /// complement, not taken as `1 - sum q_i`, which cancels when the top-K hold nearly all the mass):
    /// - `.kl`:  `kd = sum_i p_i (l_i - log q_i) + p_rest (log p_rest - log q_rest)` (forward KL over K+1 buckets,
    ///   `0 log 0 = 0`);
    /// - `.tvd`: `kd = 1/2 (sum_i |p_i - q_i| + |p_rest - q_rest|)`.
    ///
    /// `ceLosses[r]` is the cross-entropy on the data target, `kdLosses[r]` the divergence and
    /// `losses[r] = (1 - kdWeight) ce + kdWeight kd`. A teacher id of -1 marks an absent entry (an id a subset head
    /// cannot score): it is left out of the sums over i, so its mass is in `p_rest`. A row whose teacher ids are all
    /// -1 (no teacher: replayed raw text) takes the cross-entropy alone (`kdLosses[r] = 0`); a negative target ignores
    /// the row (all zero). Present teacher ids must be distinct and in `[0, vocab)`, their log-probs not NaN and not
    /// above 0 beyond rounding; a violation, or a target `>= vocab`, is an error before anything is written.
    func distillationLossForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                         teacherIds: DevicePointer<Int32>, teacherLogprobs: DevicePointer<Float>,
                                         losses: DevicePointer<Float>, ceLosses: DevicePointer<Float>,
                                         kdLosses: DevicePointer<Float>, rows: Int, vocab: Int, topK: Int,
                                         divergence: Divergence, kdWeight: Float, lossScale: Float) throws

    /// One AdamW step in PyTorch's form on `count` elements: decoupled decay `p -= lr * weightDecay * p`, then
    /// `m, v` moments and the bias-corrected update. `step` is 1-based.
    func adamw(params: DevicePointer<Float>, grads: DevicePointer<Float>, m: DevicePointer<Float>,
               v: DevicePointer<Float>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
               weightDecay: Float, step: Int) throws
}

/// The divergence a distillation loss takes between the teacher's top-K (plus the rest of the mass as one bucket)
/// and the student (see `Device.distillationLossForwardBackward`). Raw values are the HPU ABI's.
public enum Divergence: UInt32, Sendable, CaseIterable {
    /// Forward KL(teacher || student).
    case kl = 1
    /// Total variation distance.
    case tvd = 2
}

extension Device {
    public func hostBuffer<T>(_ pointer: DevicePointer<T>, count: Int) -> UnsafeMutableBufferPointer<T>? { nil }
    public var transferCounters: (toDevice: UInt64, toHost: UInt64)? { nil }
    public var moduleIndex: Int? { nil }
    public var hostComputeThreads: Int { 0 }

    /// Copies a whole host array to a new device allocation.
    public func upload<T>(_ values: [T]) throws -> DevicePointer<T> {
        let pointer = try allocate(T.self, count: values.count)
        try values.withUnsafeBufferPointer { try copyToDevice($0, pointer) }
        return pointer
    }

    /// Reads `count` elements back to a host array.
    public func download<T>(_ pointer: DevicePointer<T>, count: Int) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try copyToHost(pointer, buffer)
            initialized = count
        }
    }
}
