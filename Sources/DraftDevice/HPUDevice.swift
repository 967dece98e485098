import Foundation
import HPUPluginABI

/// The HPU backend: a Habana-style device reached through a plugin loaded with `dlopen` (the package's stub, or a
/// vendor runtime behind the same C ABI). Device pointers are the plugin's device addresses, validated by it.
///
/// All work goes to one in-order stream. Copies and kernels are issued asynchronously; `copyToHost` and
/// `synchronize` wait on the stream, and `copyToDevice` waits for its own copy so the caller may reuse the buffer.
/// Not thread-safe, like every `Device`: one thread drives it.
public final class HPUDevice: Device {
    /// The module (physical device) this process acquired.
    public let module: Int
    /// The plugin library in use.
    public let plugin: HPUPlugin
    /// Bytes copied host to device and device to host since creation; the trainer reads (and may reset) them to
    /// report per-step traffic.
    public var bytesToDevice: UInt64 = 0
    public var bytesToHost: UInt64 = 0
    /// Bytes currently allocated through this device.
    public private(set) var bytesAllocated: Int = 0

    private let deviceId: synDeviceId
    private let stream: synStreamHandle
    private let launchKernel: synLaunchKernel_fn
    private let copyAsync: synMemCopyAsync_fn
    private let streamSynchronize: synStreamSynchronize_fn
    private var allocationSizes: [UInt64: Int] = [:]

    /// Opens `module` of the plugin at `pluginPath`; `nil` picks them as `HPUPlugin.resolvePath` and
    /// `HPUPlugin.resolveModule` describe (`$SWIFTDRAFT_HPU_PLUGIN` or the built stub; `HABANA_VISIBLE_MODULES` or
    /// the local rank: `localRank`, the communicator's, when given). Throws `DeviceError` naming the path and the
    /// problem if the plugin cannot be used.
    public init(pluginPath: String? = nil, module: Int? = nil, localRank: Int? = nil) throws {
        let path = HPUPlugin.resolvePath(pluginPath)
        let plugin = try HPUPlugin.load(path: path)
        let module = try HPUPlugin.resolveModule(module, localRank: localRank)
        try plugin.deviceOpened()
        var opened = false
        defer { if !opened { plugin.deviceClosed() } }

        let api = plugin.api
        var count: UInt32 = 0
        var status = api.synDeviceGetCount.unsafelyUnwrapped(&count)
        guard status == synSuccess else { throw plugin.error(status, "hpu: synDeviceGetCount") }
        guard module < Int(count) else {
            throw DeviceError(.invalidArgument, "hpu: module \(module) does not exist: plugin \(path) has \(count) "
                                  + "module\(count == 1 ? "" : "s") (HABANA_VISIBLE_MODULES or the local rank chose it)")
        }
        var deviceId: synDeviceId = 0
        status = api.synDeviceAcquireByModuleId.unsafelyUnwrapped(&deviceId, synModuleId(module))
        guard status == synSuccess else { throw plugin.error(status, "hpu: cannot acquire module \(module)") }
        var stream: synStreamHandle?
        status = api.synStreamCreateGeneric.unsafelyUnwrapped(&stream, deviceId, 0)
        guard status == synSuccess, let stream else {
            _ = api.synDeviceRelease.unsafelyUnwrapped(deviceId)
            throw plugin.error(status, "hpu: module \(module): synStreamCreateGeneric")
        }
        self.module = module
        self.plugin = plugin
        self.deviceId = deviceId
        self.stream = stream
        self.launchKernel = api.synLaunchKernel.unsafelyUnwrapped
        self.copyAsync = api.synMemCopyAsync.unsafelyUnwrapped
        self.streamSynchronize = api.synStreamSynchronize.unsafelyUnwrapped
        opened = true
    }

    deinit {
        _ = streamSynchronize(stream)
        _ = plugin.api.synStreamDestroy.unsafelyUnwrapped(stream)
        // Releasing frees every allocation of the device as well.
        _ = plugin.api.synDeviceRelease.unsafelyUnwrapped(deviceId)
        plugin.deviceClosed()
    }

    public var name: String {
        let kind = URL(fileURLWithPath: plugin.path).lastPathComponent == HPUPlugin.stubFileName ? "stub plugin" : "plugin"
        return "hpu:\(module) (\(kind) \(plugin.path))"
    }

    public var transferCounters: (toDevice: UInt64, toHost: UInt64)? { (bytesToDevice, bytesToHost) }
    public var moduleIndex: Int? { module }

    /// Free and total device memory of this module, in bytes.
    public func memoryInfo() throws -> (free: UInt64, total: UInt64) {
        var free: UInt64 = 0, total: UInt64 = 0
        let status = plugin.api.synDeviceGetMemoryInfo.unsafelyUnwrapped(deviceId, &free, &total)
        guard status == synSuccess else { throw plugin.error(status, "hpu:\(module) synDeviceGetMemoryInfo") }
        return (free, total)
    }

    // MARK: Memory

    public func allocate<T>(_ type: T.Type, count: Int) throws -> DevicePointer<T> {
        // Checked explicitly: this module builds with -Ounchecked, where an overflowing product would wrap silently.
        let (product, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !overflow else {
            throw DeviceError(.invalidArgument, "hpu:\(module): cannot allocate \(count) elements of \(T.self)")
        }
        let bytes = max(product, 1)
        var address: UInt64 = 0
        let status = plugin.api.synDeviceMalloc.unsafelyUnwrapped(deviceId, UInt64(bytes), 0, HPU_MALLOC_ZERO,
                                                                  &address)
        if status == synOutOfDeviceMemory {
            let detail = plugin.describe(status)
            let memory = try? memoryInfo()
            let free = memory.map { "\($0.free) free of \($0.total)" } ?? "free bytes unknown"
            throw DeviceError(.outOfMemory, "hpu: out of device memory on module \(module): asked \(bytes) bytes, "
                                  + "\(free) (plugin \(plugin.path): \(detail))")
        }
        guard status == synSuccess else { throw plugin.error(status, "hpu:\(module) synDeviceMalloc(\(bytes))") }
        allocationSizes[address] = bytes
        bytesAllocated += bytes
        return DevicePointer(address: address)
    }

    public func free<T>(_ pointer: DevicePointer<T>) {
        guard let bytes = allocationSizes.removeValue(forKey: pointer.address) else { return }
        bytesAllocated -= bytes
        // The stream may still have work reading this buffer on an asynchronous plugin.
        _ = streamSynchronize(stream)
        _ = plugin.api.synDeviceFree.unsafelyUnwrapped(deviceId, pointer.address, 0)
    }

    public func copyToDevice<T>(_ source: UnsafeBufferPointer<T>, _ destination: DevicePointer<T>) throws {
        guard let base = source.baseAddress, source.count > 0 else { return }
        let bytes = UInt64(source.count * MemoryLayout<T>.stride)
        try check(copyAsync(stream, UInt64(UInt(bitPattern: base)), bytes, destination.address, HOST_TO_DRAM),
                  "copyToDevice (\(bytes) bytes)")
        // The protocol lets the caller reuse the host buffer on return.
        try check(streamSynchronize(stream), "copyToDevice synchronize")
        bytesToDevice &+= bytes
    }

    public func copyToHost<T>(_ source: DevicePointer<T>, _ destination: UnsafeMutableBufferPointer<T>) throws {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        let bytes = UInt64(destination.count * MemoryLayout<T>.stride)
        try check(copyAsync(stream, source.address, bytes, UInt64(UInt(bitPattern: base)), DRAM_TO_HOST),
                  "copyToHost (\(bytes) bytes)")
        try check(streamSynchronize(stream), "copyToHost synchronize")
        bytesToHost &+= bytes
    }

    public func copy<T>(_ source: DevicePointer<T>, _ destination: DevicePointer<T>, count: Int) throws {
        guard count > 0 else { return }
        let bytes = UInt64(count * MemoryLayout<T>.stride)
        try check(copyAsync(stream, source.address, bytes, destination.address, DRAM_TO_DRAM),
                  "copy (\(bytes) bytes)")
    }

    public func synchronize() throws {
        try check(streamSynchronize(stream), "synchronize")
    }

    // MARK: Kernels

    public func fill(_ x: DevicePointer<Float>, count: Int, value: Float) throws {
        try launch(HPU_GUID_FILL, HpuFillParams(count: Int64(count), value: value, reserved: 0), x.address)
    }

    public func scale(_ x: DevicePointer<Float>, count: Int, by alpha: Float) throws {
        try launch(HPU_GUID_SCALE, HpuScaleParams(count: Int64(count), alpha: alpha, reserved: 0), x.address)
    }

    public func axpy(_ alpha: Float, _ x: DevicePointer<Float>, _ y: DevicePointer<Float>, count: Int) throws {
        try launch(HPU_GUID_AXPY, HpuAxpyParams(count: Int64(count), alpha: alpha, reserved: 0), x.address, y.address)
    }

    public func add(_ a: DevicePointer<Float>, _ b: DevicePointer<Float>, _ out: DevicePointer<Float>,
                    count: Int) throws {
        try launch(HPU_GUID_ADD, HpuAddParams(count: Int64(count)), a.address, b.address, out.address)
    }

    public func sumOfSquares(_ x: DevicePointer<Float>, count: Int, into result: DevicePointer<Float>) throws {
        try launch(HPU_GUID_SUM_SQ, HpuSumSqParams(count: Int64(count)), x.address, result.address)
    }

    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     alpha: Float, a: DevicePointer<Float>, lda: Int,
                     b: DevicePointer<Float>, ldb: Int,
                     beta: Float, c: DevicePointer<Float>, ldc: Int) throws {
        let params = HpuGemmParams(m: Int64(m), n: Int64(n), k: Int64(k), lda: Int64(lda), ldb: Int64(ldb),
                                   ldc: Int64(ldc), alpha: alpha, beta: beta, transA: transA ? 1 : 0,
                                   transB: transB ? 1 : 0)
        try launch(HPU_GUID_GEMM, params, a.address, b.address, c.address)
    }

    public func embeddingForward(tokens: DevicePointer<Int32>, table: DevicePointer<Float>, out: DevicePointer<Float>,
                                 count: Int, dim: Int, vocab: Int) throws {
        try launch(HPU_GUID_EMBEDDING_FWD, HpuEmbeddingParams(count: Int64(count), dim: Int64(dim), vocab: Int64(vocab)),
                   tokens.address, table.address, out.address)
    }

    public func embeddingBackward(tokens: DevicePointer<Int32>, dOut: DevicePointer<Float>,
                                  dTable: DevicePointer<Float>, count: Int, dim: Int, vocab: Int) throws {
        try launch(HPU_GUID_EMBEDDING_BWD, HpuEmbeddingParams(count: Int64(count), dim: Int64(dim), vocab: Int64(vocab)),
                   tokens.address, dOut.address, dTable.address)
    }

    public func rmsNormForward(x: DevicePointer<Float>, weight: DevicePointer<Float>, out: DevicePointer<Float>,
                               rstd: DevicePointer<Float>, rows: Int, dim: Int, eps: Float) throws {
        try launch(HPU_GUID_RMS_NORM_FWD, HpuRmsNormFwdParams(rows: Int64(rows), dim: Int64(dim), eps: eps, reserved: 0),
                   x.address, weight.address, out.address, rstd.address)
    }

    public func rmsNormBackward(dOut: DevicePointer<Float>, x: DevicePointer<Float>, weight: DevicePointer<Float>,
                                rstd: DevicePointer<Float>, dX: DevicePointer<Float>, dWeight: DevicePointer<Float>,
                                rows: Int, dim: Int) throws {
        try launch(HPU_GUID_RMS_NORM_BWD, HpuRmsNormBwdParams(rows: Int64(rows), dim: Int64(dim)),
                   dOut.address, x.address, weight.address, rstd.address, dX.address, dWeight.address)
    }

    public func rotaryEmbedding(x: DevicePointer<Float>, cos: DevicePointer<Float>, sin: DevicePointer<Float>,
                                batch: Int, seqLen: Int, heads: Int, headDim: Int, inverse: Bool) throws {
        let params = HpuRopeParams(batch: Int64(batch), seqLen: Int64(seqLen), heads: Int64(heads),
                                   headDim: Int64(headDim), inverse: inverse ? 1 : 0, reserved: 0)
        try launch(HPU_GUID_ROPE, params, x.address, cos.address, sin.address)
    }

    public func attentionForward(q: DevicePointer<Float>, k: DevicePointer<Float>, v: DevicePointer<Float>,
                                 out: DevicePointer<Float>, lse: DevicePointer<Float>,
                                 batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) throws {
        let params = HpuAttentionParams(batch: Int64(batch), seqLen: Int64(seqLen), heads: Int64(heads),
                                        kvHeads: Int64(kvHeads), headDim: Int64(headDim))
        try launch(HPU_GUID_ATTENTION_FWD, params, q.address, k.address, v.address, out.address, lse.address)
    }

    public func attentionBackward(dOut: DevicePointer<Float>, q: DevicePointer<Float>, k: DevicePointer<Float>,
                                  v: DevicePointer<Float>, out: DevicePointer<Float>, lse: DevicePointer<Float>,
                                  dQ: DevicePointer<Float>, dK: DevicePointer<Float>, dV: DevicePointer<Float>,
                                  batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) throws {
        let params = HpuAttentionParams(batch: Int64(batch), seqLen: Int64(seqLen), heads: Int64(heads),
                                        kvHeads: Int64(kvHeads), headDim: Int64(headDim))
        try launch(HPU_GUID_ATTENTION_BWD, params, dOut.address, q.address, k.address, v.address, out.address,
                   lse.address, dQ.address, dK.address, dV.address)
    }

    public func swigluForward(gate: DevicePointer<Float>, up: DevicePointer<Float>, out: DevicePointer<Float>,
                              count: Int) throws {
        try launch(HPU_GUID_SWIGLU_FWD, HpuSwigluParams(count: Int64(count)), gate.address, up.address, out.address)
    }

    public func swigluBackward(dOut: DevicePointer<Float>, gate: DevicePointer<Float>, up: DevicePointer<Float>,
                               dGate: DevicePointer<Float>, dUp: DevicePointer<Float>, count: Int) throws {
        try launch(HPU_GUID_SWIGLU_BWD, HpuSwigluParams(count: Int64(count)), dOut.address, gate.address, up.address,
                   dGate.address, dUp.address)
    }

    public func crossEntropyForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                            losses: DevicePointer<Float>, rows: Int, vocab: Int,
                                            lossScale: Float) throws {
        let params = HpuCrossEntropyParams(rows: Int64(rows), vocab: Int64(vocab), lossScale: lossScale, reserved: 0)
        try launch(HPU_GUID_CROSS_ENTROPY, params, logits.address, targets.address, losses.address)
    }

    public func distillationLossForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                                teacherIds: DevicePointer<Int32>,
                                                teacherLogprobs: DevicePointer<Float>, losses: DevicePointer<Float>,
                                                ceLosses: DevicePointer<Float>, kdLosses: DevicePointer<Float>,
                                                rows: Int, vocab: Int, topK: Int, divergence: Divergence,
                                                kdWeight: Float, lossScale: Float) throws {
        let params = HpuDistillationLossParams(rows: Int64(rows), vocab: Int64(vocab), topK: Int64(topK),
                                               divergence: divergence.rawValue, kdWeight: kdWeight,
                                               lossScale: lossScale, reserved: 0)
        try launch(HPU_GUID_DISTILLATION_LOSS, params, logits.address, targets.address, teacherIds.address,
                   teacherLogprobs.address, losses.address, ceLosses.address, kdLosses.address)
    }

    public func adamw(params: DevicePointer<Float>, grads: DevicePointer<Float>, m: DevicePointer<Float>,
                      v: DevicePointer<Float>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
                      weightDecay: Float, step: Int) throws {
        let arguments = HpuAdamWParams(count: Int64(count), step: Int64(step), lr: lr, beta1: beta1, beta2: beta2,
                                       eps: eps, weightDecay: weightDecay, reserved: 0)
        try launch(HPU_GUID_ADAMW, arguments, params.address, grads.address, m.address, v.address)
    }

    // MARK: Plumbing

    /// Launches `guid` with `params` (one of the header's params structs) on the device's stream. Internal, not
    /// private: the decode kernels (`HPUDecodeKernels.swift`) launch through it too.
    @inline(__always)
    func launch<P>(_ guid: String, _ params: P, _ tensors: UInt64...) throws {
        var params = params
        let status = tensors.withUnsafeBufferPointer { tensorBuffer in
            withUnsafePointer(to: &params) { paramsPointer in
                launchKernel(stream, guid, paramsPointer, MemoryLayout<P>.size, tensorBuffer.baseAddress,
                             UInt32(tensorBuffer.count))
            }
        }
        if status != synSuccess { throw plugin.error(status, "hpu:\(module) \(guid)") }
    }

    @inline(__always)
    private func check(_ status: synStatus, _ what: @autoclosure () -> String) throws {
        if status != synSuccess { throw plugin.error(status, "hpu:\(module) \(what())") }
    }
}
