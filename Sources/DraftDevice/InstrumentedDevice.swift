import Foundation

/// A `Device` that forwards to another and, per kernel, measures time and optionally checks outputs for NaN/Inf.
///
/// `train --debug` runs on it so that the first kernel to produce a non-finite value is named (rather than a NaN
/// loss many ops later), and `bench --profile` uses its timings to show where a step's time goes. Timing waits for
/// each kernel (`synchronize`), so it measures the kernels, not the pipelining.
public final class InstrumentedDevice: Device {
    public let base: any Device
    public let checkFinite: Bool
    /// Seconds and calls per kernel name.
    public private(set) var timings: [String: (seconds: Double, calls: Int)] = [:]

    public init(wrapping base: any Device, checkFinite: Bool) {
        self.base = base
        self.checkFinite = checkFinite
    }

    public var name: String { base.name + (checkFinite ? " [NaN checks]" : " [profiled]") }

    /// Kernel timings, slowest first, as a table.
    public func report() -> String {
        let total = timings.values.reduce(0) { $0 + $1.seconds }
        return timings.sorted { $0.value.seconds > $1.value.seconds }.map { name, t in
            name.padding(toLength: 28, withPad: " ", startingAt: 0)
                + String(format: "%9.3f s %5.1f%% %7d calls", t.seconds, 100 * t.seconds / max(total, 1e-12), t.calls)
        }.joined(separator: "\n")
    }

    public func resetTimings() { timings = [:] }

    private func run(_ kernel: String, _ body: () throws -> Void) throws {
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try body()
        try base.synchronize()
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
        let previous = timings[kernel] ?? (0, 0)
        timings[kernel] = (previous.seconds + seconds, previous.calls + 1)
    }

    /// Throws naming `kernel` and `output` when any of the `rows x cols` values (row stride `stride`) is not finite.
    private func check(_ kernel: String, _ output: String, _ pointer: DevicePointer<Float>, rows: Int, cols: Int,
                       stride: Int? = nil) throws {
        guard checkFinite, rows > 0, cols > 0 else { return }
        let stride = stride ?? cols
        let values = try base.download(pointer, count: (rows - 1) * stride + cols)
        for r in 0..<rows {
            for c in 0..<cols where !values[r * stride + c].isFinite {
                throw DeviceError(.nonFinite, "--debug: kernel \(kernel) wrote \(values[r * stride + c]) to \(output)[\(r), \(c)] (the first non-finite value of this step)")
            }
        }
    }

    // MARK: Memory (not instrumented)

    public func allocate<T>(_ type: T.Type, count: Int) throws -> DevicePointer<T> { try base.allocate(type, count: count) }
    public func free<T>(_ pointer: DevicePointer<T>) { base.free(pointer) }
    public func copyToDevice<T>(_ source: UnsafeBufferPointer<T>, _ destination: DevicePointer<T>) throws {
        try base.copyToDevice(source, destination)
    }
    public func copyToHost<T>(_ source: DevicePointer<T>, _ destination: UnsafeMutableBufferPointer<T>) throws {
        try base.copyToHost(source, destination)
    }
    public func copy<T>(_ source: DevicePointer<T>, _ destination: DevicePointer<T>, count: Int) throws {
        try base.copy(source, destination, count: count)
    }
    public func synchronize() throws { try base.synchronize() }

    // MARK: Kernels

    public func fill(_ x: DevicePointer<Float>, count: Int, value: Float) throws {
        try run("fill") { try base.fill(x, count: count, value: value) }
    }
    public func scale(_ x: DevicePointer<Float>, count: Int, by alpha: Float) throws {
        try run("scale") { try base.scale(x, count: count, by: alpha) }
        try check("scale", "x", x, rows: 1, cols: count)
    }
    public func axpy(_ alpha: Float, _ x: DevicePointer<Float>, _ y: DevicePointer<Float>, count: Int) throws {
        try run("axpy") { try base.axpy(alpha, x, y, count: count) }
        try check("axpy", "y", y, rows: 1, cols: count)
    }
    public func add(_ a: DevicePointer<Float>, _ b: DevicePointer<Float>, _ out: DevicePointer<Float>, count: Int) throws {
        try run("add") { try base.add(a, b, out, count: count) }
        try check("add", "out", out, rows: 1, cols: count)
    }
    public func sumOfSquares(_ x: DevicePointer<Float>, count: Int, into result: DevicePointer<Float>) throws {
        try run("sum_of_squares") { try base.sumOfSquares(x, count: count, into: result) }
    }
    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: DevicePointer<Float>,
                     lda: Int, b: DevicePointer<Float>, ldb: Int, beta: Float, c: DevicePointer<Float>, ldc: Int) throws {
        // Per shape: the products of one step differ by an order of magnitude in size and in efficiency.
        try run("gemm \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k)") {
            try base.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                          beta: beta, c: c, ldc: ldc)
        }
        try check("gemm", "C", c, rows: m, cols: n, stride: ldc)
    }
    public func embeddingForward(tokens: DevicePointer<Int32>, table: DevicePointer<Float>, out: DevicePointer<Float>,
                                 count: Int, dim: Int, vocab: Int) throws {
        try run("embedding_fwd") {
            try base.embeddingForward(tokens: tokens, table: table, out: out, count: count, dim: dim, vocab: vocab)
        }
        try check("embedding_fwd", "out", out, rows: count, cols: dim)
    }
    public func embeddingBackward(tokens: DevicePointer<Int32>, dOut: DevicePointer<Float>, dTable: DevicePointer<Float>,
                                  count: Int, dim: Int, vocab: Int) throws {
        try run("embedding_bwd") {
            try base.embeddingBackward(tokens: tokens, dOut: dOut, dTable: dTable, count: count, dim: dim, vocab: vocab)
        }
    }
    public func rmsNormForward(x: DevicePointer<Float>, weight: DevicePointer<Float>, out: DevicePointer<Float>,
                               rstd: DevicePointer<Float>, rows: Int, dim: Int, eps: Float) throws {
        try run("rms_norm_fwd") {
            try base.rmsNormForward(x: x, weight: weight, out: out, rstd: rstd, rows: rows, dim: dim, eps: eps)
        }
        try check("rms_norm_fwd", "out", out, rows: rows, cols: dim)
    }
    public func rmsNormBackward(dOut: DevicePointer<Float>, x: DevicePointer<Float>, weight: DevicePointer<Float>,
                                rstd: DevicePointer<Float>, dX: DevicePointer<Float>, dWeight: DevicePointer<Float>,
                                rows: Int, dim: Int) throws {
        try run("rms_norm_bwd") {
            try base.rmsNormBackward(dOut: dOut, x: x, weight: weight, rstd: rstd, dX: dX, dWeight: dWeight,
                                     rows: rows, dim: dim)
        }
        try check("rms_norm_bwd", "dX", dX, rows: rows, cols: dim)
    }
    public func rotaryEmbedding(x: DevicePointer<Float>, cos: DevicePointer<Float>, sin: DevicePointer<Float>,
                                batch: Int, seqLen: Int, heads: Int, headDim: Int, inverse: Bool) throws {
        try run("rope") {
            try base.rotaryEmbedding(x: x, cos: cos, sin: sin, batch: batch, seqLen: seqLen, heads: heads,
                                     headDim: headDim, inverse: inverse)
        }
        try check("rope", "x", x, rows: batch * seqLen, cols: heads * headDim)
    }
    public func attentionForward(q: DevicePointer<Float>, k: DevicePointer<Float>, v: DevicePointer<Float>,
                                 out: DevicePointer<Float>, lse: DevicePointer<Float>, batch: Int, seqLen: Int,
                                 heads: Int, kvHeads: Int, headDim: Int) throws {
        try run("attention_fwd") {
            try base.attentionForward(q: q, k: k, v: v, out: out, lse: lse, batch: batch, seqLen: seqLen, heads: heads,
                                      kvHeads: kvHeads, headDim: headDim)
        }
        try check("attention_fwd", "out", out, rows: batch * seqLen, cols: heads * headDim)
    }
    public func attentionBackward(dOut: DevicePointer<Float>, q: DevicePointer<Float>, k: DevicePointer<Float>,
                                  v: DevicePointer<Float>, out: DevicePointer<Float>, lse: DevicePointer<Float>,
                                  dQ: DevicePointer<Float>, dK: DevicePointer<Float>, dV: DevicePointer<Float>,
                                  batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) throws {
        try run("attention_bwd") {
            try base.attentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, lse: lse, dQ: dQ, dK: dK, dV: dV,
                                       batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads, headDim: headDim)
        }
        try check("attention_bwd", "dQ", dQ, rows: batch * seqLen, cols: heads * headDim)
        try check("attention_bwd", "dK", dK, rows: batch * seqLen, cols: kvHeads * headDim)
        try check("attention_bwd", "dV", dV, rows: batch * seqLen, cols: kvHeads * headDim)
    }
    public func swigluForward(gate: DevicePointer<Float>, up: DevicePointer<Float>, out: DevicePointer<Float>,
                              count: Int) throws {
        try run("swiglu_fwd") { try base.swigluForward(gate: gate, up: up, out: out, count: count) }
        try check("swiglu_fwd", "out", out, rows: 1, cols: count)
    }
    public func swigluBackward(dOut: DevicePointer<Float>, gate: DevicePointer<Float>, up: DevicePointer<Float>,
                               dGate: DevicePointer<Float>, dUp: DevicePointer<Float>, count: Int) throws {
        try run("swiglu_bwd") {
            try base.swigluBackward(dOut: dOut, gate: gate, up: up, dGate: dGate, dUp: dUp, count: count)
        }
        try check("swiglu_bwd", "dGate", dGate, rows: 1, cols: count)
        try check("swiglu_bwd", "dUp", dUp, rows: 1, cols: count)
    }
    public func crossEntropyForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                            losses: DevicePointer<Float>, rows: Int, vocab: Int, lossScale: Float) throws {
        try run("cross_entropy") {
            try base.crossEntropyForwardBackward(logits: logits, targets: targets, losses: losses, rows: rows,
                                                 vocab: vocab, lossScale: lossScale)
        }
        try check("cross_entropy", "losses", losses, rows: 1, cols: rows)
    }
    public func distillationLossForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                                teacherIds: DevicePointer<Int32>,
                                                teacherLogprobs: DevicePointer<Float>, losses: DevicePointer<Float>,
                                                ceLosses: DevicePointer<Float>, kdLosses: DevicePointer<Float>,
                                                rows: Int, vocab: Int, topK: Int, divergence: Divergence,
                                                kdWeight: Float, lossScale: Float) throws {
        try run("distillation_loss") {
            try base.distillationLossForwardBackward(logits: logits, targets: targets, teacherIds: teacherIds,
                                                     teacherLogprobs: teacherLogprobs, losses: losses,
                                                     ceLosses: ceLosses, kdLosses: kdLosses, rows: rows,
                                                     vocab: vocab, topK: topK, divergence: divergence,
                                                     kdWeight: kdWeight, lossScale: lossScale)
        }
        try check("distillation_loss", "losses", losses, rows: 1, cols: rows)
    }
    public func adamw(params: DevicePointer<Float>, grads: DevicePointer<Float>, m: DevicePointer<Float>,
                      v: DevicePointer<Float>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
                      weightDecay: Float, step: Int) throws {
        try run("adamw") {
            try base.adamw(params: params, grads: grads, m: m, v: v, count: count, lr: lr, beta1: beta1, beta2: beta2,
                           eps: eps, weightDecay: weightDecay, step: step)
        }
        try check("adamw", "params", params, rows: 1, cols: count)
    }
}

// Backend facts pass through, so `--debug` and `--profile` change nothing about how the trainer uses the device.
extension InstrumentedDevice {
    public func hostBuffer<T>(_ pointer: DevicePointer<T>, count: Int) -> UnsafeMutableBufferPointer<T>? {
        base.hostBuffer(pointer, count: count)
    }
    public var transferCounters: (toDevice: UInt64, toHost: UInt64)? { base.transferCounters }
    public var moduleIndex: Int? { base.moduleIndex }
    public var hostComputeThreads: Int { base.hostComputeThreads }
}

// MARK: Decode kernels (inference)

extension InstrumentedDevice {
    public func rotaryEmbedding(x: DevicePointer<Float>, positions: DevicePointer<Int32>, cos: DevicePointer<Float>,
                                sin: DevicePointer<Float>, rows: Int, heads: Int, headDim: Int,
                                maxPositions: Int) throws {
        try run("rope_at_positions") {
            try base.rotaryEmbedding(x: x, positions: positions, cos: cos, sin: sin, rows: rows, heads: heads,
                                     headDim: headDim, maxPositions: maxPositions)
        }
        try check("rope_at_positions", "x", x, rows: rows, cols: heads * headDim)
    }
    public func kvCacheWrite(rows: DevicePointer<Float>, cache: DevicePointer<Float>, slots: DevicePointer<Int32>,
                             positions: DevicePointer<Int32>, count: Int, width: Int, capacity: Int,
                             slotCount: Int) throws {
        // The source rows were checked by the kernel that wrote them; the cache holds nothing else new.
        try run("kv_cache_write") {
            try base.kvCacheWrite(rows: rows, cache: cache, slots: slots, positions: positions, count: count,
                                  width: width, capacity: capacity, slotCount: slotCount)
        }
    }
    public func attentionOverCache(q: DevicePointer<Float>, kCache: DevicePointer<Float>, vCache: DevicePointer<Float>,
                                   out: DevicePointer<Float>, slots: DevicePointer<Int32>,
                                   positions: DevicePointer<Int32>, rows: Int, heads: Int, kvHeads: Int,
                                   headDim: Int, capacity: Int, slotCount: Int) throws {
        try run("attention_over_cache") {
            try base.attentionOverCache(q: q, kCache: kCache, vCache: vCache, out: out, slots: slots,
                                        positions: positions, rows: rows, heads: heads, kvHeads: kvHeads,
                                        headDim: headDim, capacity: capacity, slotCount: slotCount)
        }
        try check("attention_over_cache", "out", out, rows: rows, cols: heads * headDim)
    }
    public func addBias(x: DevicePointer<Float>, bias: DevicePointer<Float>, rows: Int, width: Int) throws {
        try run("add_bias") { try base.addBias(x: x, bias: bias, rows: rows, width: width) }
        try check("add_bias", "x", x, rows: rows, cols: width)
    }
    public func quantizedLinear(x: DevicePointer<Float>, weight: QuantizedMatrix, y: DevicePointer<Float>,
                                m: Int) throws {
        try run("qlinear \(weight.type.name) \(m)x\(weight.rows)x\(weight.columns)") {
            try base.quantizedLinear(x: x, weight: weight, y: y, m: m)
        }
        try check("quantized_linear", "y", y, rows: m, cols: weight.rows)
    }
    public func prepareForProducts(_ weight: QuantizedMatrix) throws -> (matrix: QuantizedMatrix, owner: AnyObject?) {
        try base.prepareForProducts(weight)
    }
    public func quantizedEmbedding(tokens: DevicePointer<Int32>, table: QuantizedMatrix, out: DevicePointer<Float>,
                                   count: Int) throws {
        try run("qembedding \(table.type.name)") {
            try base.quantizedEmbedding(tokens: tokens, table: table, out: out, count: count)
        }
        try check("quantized_embedding", "out", out, rows: count, cols: table.columns)
    }
}
