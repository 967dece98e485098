import Foundation
import HPUPluginABI
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The decode GUIDs through the stub's C ABI: every bad index value, short tensor, foreign or host address and bad
/// params comes back as an error status with a detail, nothing is written, and the plugin keeps working.
final class HPUDecodeABITests: XCTestCase {
    private var api = HpuPluginApi()
    private var device: synDeviceId = 0
    private var otherDevice: synDeviceId = 0
    private var stream: synStreamHandle?

    // Modules no other HPU test acquires, so this test can run beside an open HPUDevice or HPUABITests.
    private let module: synModuleId = 4
    private let otherModule: synModuleId = 5

    override func setUpWithError() throws {
        let path = try builtStubPath()
        let handle = try XCTUnwrap(dlopen(path, RTLD_NOW | RTLD_LOCAL), "dlopen \(path)")
        let symbol = try XCTUnwrap(dlsym(handle, HPU_PLUGIN_ENTRY_SYMBOL))
        let entry = unsafeBitCast(symbol, to: hpuGetPluginApi_fn.self)
        let table = try XCTUnwrap(entry(UInt32(HPU_PLUGIN_ABI_MAJOR << 16 | HPU_PLUGIN_ABI_MINOR)))
        api = table.pointee
        XCTAssertEqual(api.abi_version, UInt32(1 << 16 | 3), "the stub implements ABI 1.3")
        XCTAssertEqual(api.struct_size, HPUPluginStructSize.v1_0, "1.1, 1.2 and 1.3 appended no function")
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

    // MARK: Helpers

    /// A device buffer holding `values` (4-byte elements).
    private func buffer<T>(_ values: [T], on device: synDeviceId? = nil) -> UInt64 {
        var address: UInt64 = 0
        let bytes = UInt64(max(values.count, 1) * MemoryLayout<T>.stride)
        XCTAssertEqual(api.synDeviceMalloc!(device ?? self.device, bytes, 0, HPU_MALLOC_ZERO, &address), synSuccess)
        if device == nil || device == self.device, !values.isEmpty {
            values.withUnsafeBytes { raw in
                XCTAssertEqual(api.synMemCopyAsync!(stream, UInt64(UInt(bitPattern: raw.baseAddress)), bytes, address,
                                                    HOST_TO_DRAM), synSuccess)
            }
        }
        return address
    }

    private func read(_ address: UInt64, _ count: Int) -> [Float] {
        var values = [Float](repeating: .nan, count: count)
        values.withUnsafeMutableBytes { raw in
            XCTAssertEqual(api.synMemCopyAsync!(stream, address, UInt64(raw.count),
                                                UInt64(UInt(bitPattern: raw.baseAddress)), DRAM_TO_HOST), synSuccess)
        }
        return values
    }

    private func detail() -> String {
        var text = [CChar](repeating: 0, count: 512)
        _ = api.hpuGetLastErrorDetail!(&text, text.count)
        return String(cString: text)
    }

    private func launch<P>(_ guid: String, _ params: P, _ tensors: [UInt64], size: Int? = nil) -> synStatus {
        var params = params
        return withUnsafePointer(to: &params) { pointer in
            api.synLaunchKernel!(stream, guid, pointer, size ?? MemoryLayout<P>.size, tensors, UInt32(tensors.count))
        }
    }

    /// Asserts `status` is `expected` and the detail mentions `fragment`.
    private func assertFails(_ status: synStatus, _ expected: synStatus, _ fragment: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(status, expected, "detail: \(detail())", file: file, line: line)
        XCTAssertTrue(detail().contains(fragment), "detail lacks '\(fragment)': \(detail())", file: file, line: line)
    }

    private func hostAddress(_ values: inout [Float]) -> UInt64 {
        values.withUnsafeMutableBufferPointer { UInt64(UInt(bitPattern: $0.baseAddress)) }
    }

    // MARK: Tests

    func testKVCacheWriteRejectsBadIndicesShortTensorsAndForeignAddresses() throws {
        let (slotCount, capacity, width, count) = (2, 8, 4, 3)
        let cacheValues = (0..<(slotCount * capacity * width)).map { Float($0) }
        let cache = buffer(cacheValues), rows = buffer([Float](repeating: -1, count: count * width))
        let good = HpuKvCacheWriteParams(count: Int64(count), width: Int64(width), capacity: Int64(capacity),
                                         slotCount: Int64(slotCount))
        let slots = buffer([Int32]([0, 1, 1])), positions = buffer([Int32]([0, 7, 3]))
        let g = HPU_GUID_KV_CACHE_WRITE

        // Index values: the bad row is the last, so an early write would show.
        assertFails(launch(g, good, [rows, cache, buffer([Int32]([0, 1, 2])), positions]), synKernelFailed,
                    "slots[2] = 2 is outside [0, slotCount = 2)")
        assertFails(launch(g, good, [rows, cache, slots, buffer([Int32]([0, 1, 8]))]), synKernelFailed,
                    "positions[2] = 8 is outside [0, capacity = 8)")
        assertFails(launch(g, good, [rows, cache, slots, buffer([Int32]([0, -1, 3]))]), synKernelFailed,
                    "positions[1] = -1")
        XCTAssertEqual(read(cache, cacheValues.count), cacheValues, "a rejected write changes nothing")

        // A cache allocation smaller than slotCount * capacity * width, and index tensors shorter than count.
        let shortCache = buffer([Float](repeating: 0, count: slotCount * capacity * width - 1))
        assertFails(launch(g, good, [rows, shortCache, slots, positions]), synInvalidDeviceAddress, "past the end")
        assertFails(launch(g, good, [rows, cache, buffer([Int32]([0, 1])), positions]), synInvalidDeviceAddress,
                    "tensor 2 (slots)")
        // Another module's memory, a host pointer, a misaligned address, a freed buffer.
        let foreign = buffer([Float](repeating: 0, count: slotCount * capacity * width), on: otherDevice)
        assertFails(launch(g, good, [rows, foreign, slots, positions]), synInvalidDeviceAddress,
                    "belongs to module \(otherModule)")
        var host = [Float](repeating: 0, count: count * width)
        // (Which message depends on where the host heap lies relative to the stub's module spans.)
        assertFails(launch(g, good, [hostAddress(&host), cache, slots, positions]), synInvalidDeviceAddress,
                    "tensor 0 (rows)")
        assertFails(launch(g, good, [rows, cache + 2, slots, positions]), synInvalidDeviceAddress, "aligned")
        let freed = buffer([Float](repeating: 0, count: count * width))
        XCTAssertEqual(api.synDeviceFree!(device, freed, 0), synSuccess)
        assertFails(launch(g, good, [freed, cache, slots, positions]), synInvalidDeviceAddress,
                    "not inside a live allocation")
        // Params: negative or overflowing sizes, the wrong params size, the wrong tensor count.
        var bad = good
        bad.capacity = -1
        assertFails(launch(g, bad, [rows, cache, slots, positions]), synInvalidArgument, "out of range")
        bad = good
        bad.slotCount = Int64.max / 2
        assertFails(launch(g, bad, [rows, cache, slots, positions]), synInvalidArgument, "out of range")
        assertFails(launch(g, good, [rows, cache, slots, positions], size: 24), synInvalidArgument, "must be 32 bytes")
        assertFails(launch(g, good, [rows, cache, slots]), synInvalidArgument, "takes 4 tensors")
        XCTAssertEqual(read(cache, cacheValues.count), cacheValues, "no rejected launch wrote")

        // And the plugin still works.
        XCTAssertEqual(launch(g, good, [rows, cache, slots, positions]), synSuccess, detail())
        let written = read(cache, cacheValues.count)
        XCTAssertEqual(Array(written[(1 * capacity + 7) * width..<(1 * capacity + 8) * width]), [-1, -1, -1, -1])
        XCTAssertEqual(written[(1 * capacity + 6) * width], cacheValues[(1 * capacity + 6) * width])
    }

    func testAttentionOverCacheRejectsBadIndicesAndShapes() throws {
        let (rows, heads, kvHeads, headDim, capacity, slotCount) = (2, 4, 2, 8, 6, 3)
        let cacheCount = slotCount * capacity * kvHeads * headDim
        let q = buffer([Float](repeating: 0.5, count: rows * heads * headDim))
        let k = buffer([Float](repeating: 0.25, count: cacheCount)), v = buffer([Float](repeating: 2, count: cacheCount))
        let outValues = [Float](repeating: 7, count: rows * heads * headDim)
        let out = buffer(outValues)
        let good = HpuAttentionOverCacheParams(rows: Int64(rows), heads: Int64(heads), kvHeads: Int64(kvHeads),
                                               headDim: Int64(headDim), capacity: Int64(capacity),
                                               slotCount: Int64(slotCount))
        let slots = buffer([Int32]([2, 0])), positions = buffer([Int32]([5, 0]))
        let g = HPU_GUID_ATTENTION_OVER_CACHE

        assertFails(launch(g, good, [q, k, v, out, buffer([Int32]([0, 3])), positions]), synKernelFailed,
                    "slots[1] = 3 is outside [0, slotCount = 3)")
        assertFails(launch(g, good, [q, k, v, out, slots, buffer([Int32]([1, 6]))]), synKernelFailed,
                    "positions[1] = 6 is outside [0, capacity = 6)")
        assertFails(launch(g, good, [q, k, v, out, slots, buffer([Int32]([Int32.min, 0]))]), synKernelFailed,
                    "positions[0]")
        let shortCache = buffer([Float](repeating: 0, count: cacheCount - 8))
        assertFails(launch(g, good, [q, k, shortCache, out, slots, positions]), synInvalidDeviceAddress,
                    "tensor 2 (vCache)")
        let foreign = buffer([Float](repeating: 0, count: rows * heads * headDim), on: otherDevice)
        assertFails(launch(g, good, [q, k, v, foreign, slots, positions]), synInvalidDeviceAddress,
                    "belongs to module \(otherModule)")
        var bad = good
        bad.kvHeads = 3
        assertFails(launch(g, bad, [q, k, v, out, slots, positions]), synInvalidArgument, "multiple of kvHeads")
        bad.kvHeads = 0
        assertFails(launch(g, bad, [q, k, v, out, slots, positions]), synInvalidArgument, "multiple of kvHeads")
        bad = good
        bad.rows = -2
        assertFails(launch(g, bad, [q, k, v, out, slots, positions]), synInvalidArgument, "out of range")
        XCTAssertEqual(read(out, outValues.count), outValues, "no rejected launch wrote")

        // Constant keys give uniform weights, so every output is the constant value.
        XCTAssertEqual(launch(g, good, [q, k, v, out, slots, positions]), synSuccess, detail())
        XCTAssertEqual(read(out, outValues.count), [Float](repeating: 2, count: outValues.count))
    }

    func testRotaryAtPositionsAndBiasRejectBadInput() throws {
        let (rows, heads, headDim, maxPositions) = (3, 2, 4, 5)
        let xValues = (0..<(rows * heads * headDim)).map { Float($0) }
        let x = buffer(xValues)
        let table = buffer([Float](repeating: 1, count: maxPositions * headDim / 2))
        let good = HpuRopeAtPositionsParams(rows: Int64(rows), heads: Int64(heads), headDim: Int64(headDim),
                                            maxPositions: Int64(maxPositions))
        let g = HPU_GUID_ROPE_AT_POSITIONS

        assertFails(launch(g, good, [x, buffer([Int32]([0, 4, 5])), table, table]), synKernelFailed,
                    "positions[2] = 5 is outside [0, maxPositions = 5)")
        var bad = good
        bad.headDim = 3
        assertFails(launch(g, bad, [x, buffer([Int32]([0, 0, 0])), table, table]), synInvalidArgument, "even")
        bad = good
        bad.maxPositions = 6
        assertFails(launch(g, bad, [x, buffer([Int32]([0, 0, 0])), table, table]), synInvalidDeviceAddress,
                    "tensor 2 (cos)")
        XCTAssertEqual(read(x, xValues.count), xValues, "a rejected rotation changes nothing")

        let bias = buffer([Float](repeating: 1, count: 7))
        assertFails(launch(HPU_GUID_ADD_BIAS, HpuAddBiasParams(rows: 3, width: 8), [x, bias]), synInvalidDeviceAddress,
                    "tensor 1 (bias)")
        assertFails(launch(HPU_GUID_ADD_BIAS, HpuAddBiasParams(rows: 4, width: 8), [x, buffer([Float](repeating: 1, count: 8))]),
                    synInvalidDeviceAddress, "tensor 0 (x)")
        XCTAssertEqual(read(x, xValues.count), xValues)
        XCTAssertEqual(launch(HPU_GUID_ADD_BIAS, HpuAddBiasParams(rows: 3, width: 8),
                              [x, buffer([Float](repeating: 1, count: 8))]), synSuccess, detail())
        XCTAssertEqual(read(x, xValues.count), xValues.map { $0 + 1 })
    }
}

/// `HPU_PLUGIN_API_STRUCT_SIZE_1_0`, which Swift cannot import (it is a function-like macro).
enum HPUPluginStructSize {
    static let v1_0 = MemoryLayout<HpuPluginApi>.offset(of: \HpuPluginApi.synLaunchKernel).unsafelyUnwrapped
        + MemoryLayout<synLaunchKernel_fn?>.size
}
