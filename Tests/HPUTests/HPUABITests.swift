import Foundation
import HPUPluginABI
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Drives the stub's C ABI directly, as a vendor-neutral host would: every bad address, range, direction and
/// handle must come back as an error status, and the process (and the plugin's state) must survive.
final class HPUABITests: XCTestCase {
    private var api = HpuPluginApi()
    private var device: synDeviceId = 0
    private var otherDevice: synDeviceId = 0
    private var stream: synStreamHandle?

    // Modules no other HPU test acquires, so this test can run beside an open HPUDevice.
    private let module: synModuleId = 6
    private let otherModule: synModuleId = 7

    override func setUpWithError() throws {
        let path = try builtStubPath()
        let handle = try XCTUnwrap(dlopen(path, RTLD_NOW | RTLD_LOCAL), "dlopen \(path)")
        let symbol = try XCTUnwrap(dlsym(handle, HPU_PLUGIN_ENTRY_SYMBOL))
        let entry = unsafeBitCast(symbol, to: hpuGetPluginApi_fn.self)
        let table = try XCTUnwrap(entry(UInt32(HPU_PLUGIN_ABI_MAJOR << 16 | HPU_PLUGIN_ABI_MINOR)))
        api = table.pointee
        XCTAssertEqual(api.abi_version >> 16, UInt32(HPU_PLUGIN_ABI_MAJOR))
        XCTAssertNil(entry(UInt32(HPU_PLUGIN_ABI_MAJOR + 1) << 16), "a future MAJOR must be refused")

        let initialized = api.synInitialize!()
        XCTAssertTrue(initialized == synSuccess || initialized == synObjectAlreadyInitialized)
        var count: UInt32 = 0
        XCTAssertEqual(api.synDeviceGetCount!(&count), synSuccess)
        try XCTSkipIf(count <= otherModule, "the stub has \(count) modules; this test needs \(otherModule + 1)")
        XCTAssertEqual(api.synDeviceAcquireByModuleId!(&device, module), synSuccess)
        XCTAssertEqual(api.synDeviceAcquireByModuleId!(&otherDevice, otherModule), synSuccess)
        XCTAssertEqual(api.synStreamCreateGeneric!(&stream, device, 0), synSuccess)
    }

    override func tearDown() {
        if api.synDeviceRelease != nil {
            _ = api.synDeviceRelease!(device)
            _ = api.synDeviceRelease!(otherDevice)
        }
    }

    private func malloc(_ bytes: UInt64, on device: synDeviceId? = nil) -> UInt64 {
        var address: UInt64 = 0
        XCTAssertEqual(api.synDeviceMalloc!(device ?? self.device, bytes, 0, HPU_MALLOC_ZERO, &address), synSuccess)
        return address
    }

    private func detail() -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        _ = api.hpuGetLastErrorDetail!(&buffer, buffer.count)
        return String(cString: buffer)
    }

    private func copy(_ src: UInt64, _ size: UInt64, _ dst: UInt64, _ direction: synDmaDir) -> synStatus {
        api.synMemCopyAsync!(stream, src, size, dst, direction)
    }

    private func launch<P>(_ guid: String, _ params: P, _ tensors: [UInt64]) -> synStatus {
        var params = params
        return withUnsafePointer(to: &params) { pointer in
            api.synLaunchKernel!(stream, guid, pointer, MemoryLayout<P>.size, tensors, UInt32(tensors.count))
        }
    }

    private func host(_ values: inout [Float]) -> UInt64 {
        values.withUnsafeMutableBufferPointer { UInt64(UInt(bitPattern: $0.baseAddress)) }
    }

    func testCopiesRejectFreedOutOfRangeAndMisdirectedAddresses() throws {
        let a = malloc(1024), b = malloc(256)
        var buffer = [Float](repeating: 1.5, count: 512)
        let hostAddress = host(&buffer)

        // Valid traffic works, and device addresses are not host pointers.
        XCTAssertEqual(copy(hostAddress, 1024, a, HOST_TO_DRAM), synSuccess)
        XCTAssertNotEqual(a, hostAddress)
        XCTAssertGreaterThanOrEqual(a, 0x1000_0000_0000 * (UInt64(module) + 1))
        XCTAssertEqual(a % UInt64(HPU_DEVICE_ALIGNMENT), 0)

        // Out of range: past the end, straddling the end, before the start, nowhere near.
        XCTAssertEqual(copy(hostAddress, 1025, a, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("past the end"), detail())
        XCTAssertEqual(copy(hostAddress, 8, a + 1020, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertEqual(copy(a - 4, 4, hostAddress, DRAM_TO_HOST), synInvalidDeviceAddress)
        XCTAssertEqual(copy(0x1234, 4, hostAddress, DRAM_TO_HOST), synInvalidDeviceAddress)
        XCTAssertEqual(copy(a, 4, a + 1 << 40, DRAM_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertEqual(copy(a, UInt64.max, b, DRAM_TO_DRAM), synInvalidDeviceAddress)

        // Freed: copies into it, out of it and a second free all fail.
        XCTAssertEqual(api.synDeviceFree!(device, b, 0), synSuccess)
        XCTAssertEqual(copy(hostAddress, 16, b, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("not inside a live allocation"), detail())
        XCTAssertEqual(copy(b, 16, hostAddress, DRAM_TO_HOST), synInvalidDeviceAddress)
        XCTAssertEqual(copy(a, 16, b, DRAM_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertEqual(api.synDeviceFree!(device, b, 0), synInvalidDeviceAddress)
        XCTAssertEqual(api.synDeviceFree!(device, a + 4, 0), synInvalidDeviceAddress, "not an allocation's start")

        // Misdirected: a device address where a host pointer belongs and the reverse, or an unknown direction.
        XCTAssertEqual(copy(a, 16, a, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("wrong direction"), detail())
        XCTAssertEqual(copy(a, 16, a, DRAM_TO_HOST), synInvalidDeviceAddress)
        XCTAssertEqual(copy(hostAddress, 16, a, DRAM_TO_HOST), synInvalidDeviceAddress)
        XCTAssertEqual(copy(a, 16, hostAddress, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertEqual(copy(hostAddress, 16, hostAddress, DRAM_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertEqual(copy(hostAddress, 16, a, synDmaDir(rawValue: 7)), synInvalidArgument)
        XCTAssertEqual(copy(0, 16, a, HOST_TO_DRAM), synInvalidArgument)

        // Another module's memory is not this device's.
        let foreign = malloc(64, on: otherDevice)
        XCTAssertEqual(copy(hostAddress, 16, foreign, HOST_TO_DRAM), synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("module \(otherModule)"), detail())

        // After all that, the allocation still holds what was written, and DRAM_TO_DRAM may overlap.
        XCTAssertEqual(copy(a, 1020, a + 4, DRAM_TO_DRAM), synSuccess)
        var back = [Float](repeating: 0, count: 256)
        XCTAssertEqual(copy(a, 1024, host(&back), DRAM_TO_HOST), synSuccess)
        XCTAssertEqual(api.synStreamSynchronize!(stream), synSuccess)
        XCTAssertEqual(back, [Float](repeating: 1.5, count: 256))
    }

    func testKernelLaunchesValidateEveryTensorExtent() throws {
        let a = malloc(1024), small = malloc(64), freed = malloc(64)
        XCTAssertEqual(api.synDeviceFree!(device, freed, 0), synSuccess)

        // fill of 256 floats fits `a`, 257 does not; a freed or misaligned tensor is rejected.
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 256, value: 2, reserved: 0), [a]), synSuccess)
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 257, value: 2, reserved: 0), [a]),
                       synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("fill_f32 tensor 0 (x)"), detail())
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 4, value: 2, reserved: 0), [freed]),
                       synInvalidDeviceAddress)
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 4, value: 2, reserved: 0), [a + 2]),
                       synInvalidDeviceAddress)
        XCTAssertTrue(detail().contains("aligned"), detail())
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: -1, value: 2, reserved: 0), [a]), synInvalidArgument)

        // gemm: c's extent is (m-1)*ldc + n; an ldc that pushes the last row past `small` is caught.
        let gemm = HpuGemmParams(m: 4, n: 4, k: 4, lda: 4, ldb: 4, ldc: 5, alpha: 1, beta: 0, transA: 0, transB: 0)
        XCTAssertEqual(launch(HPU_GUID_GEMM, gemm, [a, a, small]), synInvalidDeviceAddress) // needs 19 floats > 16
        XCTAssertTrue(detail().contains("gemm_f32 tensor 2 (c)"), detail())
        var fitting = gemm
        fitting.ldc = 4
        XCTAssertEqual(launch(HPU_GUID_GEMM, fitting, [a, a, small]), synSuccess)
        var shortLd = gemm
        shortLd.lda = 3
        XCTAssertEqual(launch(HPU_GUID_GEMM, shortLd, [a, a, a]), synInvalidArgument)

        // Huge sizes are measured, not wrapped into small valid ranges: 2^62 bytes of gemm operand are out of range,
        // and extents beyond 64-bit byte counts are invalid arguments.
        let huge: Int64 = 0x7FFF_FFFF
        let hugeGemm = HpuGemmParams(m: huge, n: huge, k: huge, lda: huge, ldb: huge, ldc: huge, alpha: 1, beta: 0,
                                     transA: 0, transB: 0)
        XCTAssertEqual(launch(HPU_GUID_GEMM, hugeGemm, [a, a, a]), synInvalidDeviceAddress)
        XCTAssertEqual(launch(HPU_GUID_ATTENTION_FWD, HpuAttentionParams(batch: 1 << 30, seqLen: 1 << 30, heads: 1 << 30,
                                                                         kvHeads: 1, headDim: 1 << 30),
                              [a, a, a, a, a]), synInvalidArgument)
        XCTAssertEqual(launch(HPU_GUID_ADAMW, HpuAdamWParams(count: 1 << 40, step: 1, lr: 0, beta1: 0, beta2: 0, eps: 0,
                                                             weightDecay: 0, reserved: 0), [a, a, a, a]),
                       synInvalidDeviceAddress)

        // Attention: the lse tensor of (batch, heads, seqLen) floats must fit.
        let attention = HpuAttentionParams(batch: 1, seqLen: 8, heads: 2, kvHeads: 1, headDim: 4)
        XCTAssertEqual(launch(HPU_GUID_ATTENTION_FWD, attention, [a, a, a, a, small]), synSuccess)
        var longer = attention
        longer.seqLen = 9 // lse needs 18 floats, small has 16
        XCTAssertEqual(launch(HPU_GUID_ATTENTION_FWD, longer, [a, a, a, a, small]), synInvalidDeviceAddress)
        var ungrouped = attention
        ungrouped.kvHeads = 3
        XCTAssertEqual(launch(HPU_GUID_ATTENTION_FWD, ungrouped, [a, a, a, a, a]), synInvalidArgument)

        // A host pointer as a tensor, a foreign module's tensor, a wrong params size, count, or GUID.
        var hostBuffer = [Float](repeating: 0, count: 16)
        XCTAssertEqual(launch(HPU_GUID_SCALE, HpuScaleParams(count: 16, alpha: 2, reserved: 0), [host(&hostBuffer)]),
                       synInvalidDeviceAddress)
        let foreign = malloc(64, on: otherDevice)
        XCTAssertEqual(launch(HPU_GUID_SCALE, HpuScaleParams(count: 16, alpha: 2, reserved: 0), [foreign]),
                       synInvalidDeviceAddress)
        XCTAssertEqual(launch(HPU_GUID_SCALE, HpuAddParams(count: 16), [a]), synInvalidArgument)
        XCTAssertEqual(launch(HPU_GUID_ADD, HpuAddParams(count: 16), [a, a]), synInvalidArgument)
        XCTAssertEqual(launch("softmax_f16", HpuAddParams(count: 16), [a]), synUnsupported)
        XCTAssertEqual(api.synLaunchKernel!(stream, HPU_GUID_ADD, nil, 8, [a, a, a], 3), synInvalidArgument)

        // Data-dependent failures change nothing: a token id outside the vocabulary, a target >= vocab.
        var tokens: [Int32] = [0, 1, 9]
        let tokenAddress = malloc(12)
        _ = tokens.withUnsafeMutableBufferPointer {
            copy(UInt64(UInt(bitPattern: $0.baseAddress)), 12, tokenAddress, HOST_TO_DRAM)
        }
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 256, value: 7, reserved: 0), [a]), synSuccess)
        XCTAssertEqual(launch(HPU_GUID_EMBEDDING_FWD, HpuEmbeddingParams(count: 3, dim: 4, vocab: 4),
                              [tokenAddress, small, a]), synKernelFailed)
        XCTAssertTrue(detail().contains("token id 9"), detail())
        XCTAssertEqual(launch(HPU_GUID_CROSS_ENTROPY, HpuCrossEntropyParams(rows: 3, vocab: 8, lossScale: 1, reserved: 0),
                              [a, tokenAddress, small]), synKernelFailed)
        var back = [Float](repeating: 0, count: 256)
        XCTAssertEqual(copy(a, 1024, host(&back), DRAM_TO_HOST), synSuccess)
        XCTAssertEqual(back, [Float](repeating: 7, count: 256), "a failed kernel must not write its outputs")
    }

    func testHandlesAndEvents() throws {
        var start: synEventHandle?, end: synEventHandle?
        XCTAssertEqual(api.synEventCreate!(&start, device, 0), synSuccess)
        XCTAssertEqual(api.synEventCreate!(&end, device, 0), synSuccess)
        var nanoseconds: UInt64 = 0
        XCTAssertEqual(api.synEventElapsedTime!(&nanoseconds, start, end), synInvalidArgument, "never recorded")
        XCTAssertEqual(api.synEventRecord!(start, stream), synSuccess)
        let a = malloc(1 << 20)
        XCTAssertEqual(launch(HPU_GUID_FILL, HpuFillParams(count: 1 << 18, value: 1, reserved: 0), [a]), synSuccess)
        XCTAssertEqual(api.synEventRecord!(end, stream), synSuccess)
        XCTAssertEqual(api.synEventSynchronize!(end), synSuccess)
        XCTAssertEqual(api.synEventElapsedTime!(&nanoseconds, start, end), synSuccess)
        XCTAssertGreaterThan(nanoseconds, 0)
        XCTAssertEqual(api.synEventDestroy!(start), synSuccess)
        XCTAssertEqual(api.synEventDestroy!(start), synInvalidHandle, "double destroy")
        XCTAssertEqual(api.synEventRecord!(start, stream), synInvalidHandle)

        var second: synStreamHandle?
        XCTAssertEqual(api.synStreamCreateGeneric!(&second, device, 0), synSuccess)
        XCTAssertEqual(api.synStreamDestroy!(second), synSuccess)
        XCTAssertEqual(api.synStreamSynchronize!(second), synInvalidHandle)
        XCTAssertEqual(api.synMemCopyAsync!(second, a, 4, a, DRAM_TO_DRAM), synInvalidHandle)

        // A module is acquired once; devices that are not acquired are refused.
        var again: synDeviceId = 0
        XCTAssertEqual(api.synDeviceAcquireByModuleId!(&again, module), synDeviceAlreadyAcquired)
        XCTAssertEqual(api.synDeviceAcquireByModuleId!(&again, 1000), synNoDeviceFound)
        var free: UInt64 = 0, total: UInt64 = 0
        XCTAssertEqual(api.synDeviceGetMemoryInfo!(1000, &free, &total), synDeviceNotAcquired)
        XCTAssertEqual(api.synDeviceGetMemoryInfo!(device, &free, &total), synSuccess)
        XCTAssertEqual(total - free, 1 << 20)

        var description = [CChar](repeating: 0, count: 64)
        XCTAssertEqual(api.synStatusGetBriefDescription!(synInvalidDeviceAddress, &description, description.count),
                       synSuccess)
        XCTAssertEqual(String(cString: description), "invalid device address")
    }
}
