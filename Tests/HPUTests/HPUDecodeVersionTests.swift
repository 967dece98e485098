import DraftDevice
import Foundation
import HPUPluginABI
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// An ABI 1.0 plugin still trains, but inference on it is refused with a message naming the plugin and both
/// versions. The 1.0 plugin is the stub under `HPU_STUB_ABI_MINOR=0`, loaded from a private copy so that it is a
/// separate library instance whatever the other tests did with the shared one.
final class HPUDecodeVersionTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory()
    }

    override func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// A copy of the stub, loaded (and so its hook read) with `HPU_STUB_ABI_MINOR=minor`, opened on `module`.
    private func openStubCopy(named name: String, minor: String, module: Int) throws -> HPUDevice {
        let copy = directory.appendingPathComponent("lib\(name).so").path
        try FileManager.default.copyItem(atPath: try builtStubPath(), toPath: copy)
        let previous = ProcessInfo.processInfo.environment["HPU_STUB_ABI_MINOR"]
        setenv("HPU_STUB_ABI_MINOR", minor, 1)
        defer {
            if let previous { setenv("HPU_STUB_ABI_MINOR", previous, 1) } else { unsetenv("HPU_STUB_ABI_MINOR") }
        }
        return try HPUDevice(pluginPath: copy, module: module)
    }

    func testTheStubImplementsTheDecodeKernels() throws {
        let device = try HPUDevice(pluginPath: try builtStubPath(), module: 0)
        XCTAssertEqual(device.plugin.abiVersion, 1 << 16 | 3)
        XCTAssertTrue(device.plugin.implementsDecodeKernels)
        XCTAssertEqual(HPUPlugin.inferenceABIVersion, 1 << 16 | 1)
    }

    /// A 1.2 plugin (the stub under `HPU_STUB_ABI_MINOR=2`) has the distillation loss as 1.2 defined it: rows with
    /// a teacher or without one, but an absent entry (-1) beside present ones, which a subset head's KD stage makes,
    /// is refused naming the row and the MINOR that takes it, with nothing written.
    func testAnABI12PluginRefusesAbsentTeacherEntries() throws {
        let device = try openStubCopy(named: "hpu-stub-abi-1-2", minor: "2", module: 2)
        XCTAssertEqual(device.plugin.abiVersion, 1 << 16 | 2)
        let vocab = 11, logits = (0..<vocab).map { Float($0) * 0.1 }
        func run(_ ids: [Int32]) throws -> [Float] {
            let dLogits = try device.upload(logits), losses = try device.upload([Float(7)])
            let ce = try device.allocate(Float.self, count: 1), kd = try device.allocate(Float.self, count: 1)
            try device.distillationLossForwardBackward(
                logits: dLogits, targets: try device.upload([Int32(2)]), teacherIds: try device.upload(ids),
                teacherLogprobs: try device.upload([Float(-1), -2, -3]), losses: losses, ceLosses: ce, kdLosses: kd,
                rows: 1, vocab: vocab, topK: 3, divergence: .kl, kdWeight: 1, lossScale: 1)
            return try device.download(losses, count: 1)
        }
        XCTAssertGreaterThan(try run([1, 2, 3])[0], 0, "a full teacher row")
        XCTAssertGreaterThan(try run([-1, -1, -1])[0], 0, "a row without a teacher: the cross-entropy")
        for ids: [Int32] in [[1, -1, 3], [-1, 2, 3]] {
            XCTAssertThrowsError(try run(ids), "\(ids)") { error in
                XCTAssertTrue("\(error)".contains("row 0") && "\(error)".contains("need 1.3"), "\(error)")
            }
        }
    }

    func testAnABI10PluginTrainsButRefusesInference() throws {
        let device = try openStubCopy(named: "hpu-stub-abi-1-0", minor: "0", module: 3)
        let path = device.plugin.path
        XCTAssertEqual(device.plugin.abiVersion, 1 << 16, "the hook makes the copy a 1.0 plugin")
        XCTAssertFalse(device.plugin.implementsDecodeKernels)

        // Training kernels work as before.
        let a = try device.upload([Float]([1, 2, 3, 4])), b = try device.upload([Float]([10, 20, 30, 40]))
        try device.axpy(2, a, b, count: 4)
        XCTAssertEqual(try device.download(b, count: 4), [12, 24, 36, 48])

        // Every decode kernel is refused, by the host, before a launch.
        let x = try device.allocate(Float.self, count: 64), index = try device.upload([Int32]([0, 0]))
        let calls: [(String, () throws -> Void)] = [
            ("rotaryEmbedding", { try device.rotaryEmbedding(x: x, positions: index, cos: x, sin: x, rows: 2, heads: 1,
                                                             headDim: 4, maxPositions: 4) }),
            ("kvCacheWrite", { try device.kvCacheWrite(rows: x, cache: x, slots: index, positions: index, count: 2,
                                                       width: 4, capacity: 2, slotCount: 1) }),
            ("attentionOverCache", { try device.attentionOverCache(q: x, kCache: x, vCache: x, out: x, slots: index,
                                                                   positions: index, rows: 2, heads: 1, kvHeads: 1,
                                                                   headDim: 4, capacity: 2, slotCount: 1) }),
            ("addBias", { try device.addBias(x: x, bias: x, rows: 2, width: 4) }),
        ]
        for (name, call) in calls {
            XCTAssertThrowsError(try call(), name) { error in
                guard let error = error as? DeviceError else { return XCTFail("\(name): not a DeviceError: \(error)") }
                XCTAssertEqual(error.kind, .plugin, name)
                XCTAssertTrue(error.message.contains("plugin \(path) implements HPU ABI 1.0; inference needs 1.1"),
                              "\(name): \(error.message)")
            }
        }

        // Had the host launched anyway, the 1.0 plugin would not have known the GUID.
        let handle = try XCTUnwrap(dlopen(path, RTLD_NOW | RTLD_LOCAL))
        defer { dlclose(handle) }
        let entry = unsafeBitCast(try XCTUnwrap(dlsym(handle, HPU_PLUGIN_ENTRY_SYMBOL)), to: hpuGetPluginApi_fn.self)
        let api = try XCTUnwrap(entry(UInt32(HPU_PLUGIN_ABI_MAJOR << 16 | HPU_PLUGIN_ABI_MINOR))).pointee
        XCTAssertEqual(api.abi_version, 1 << 16)
        var stream: synStreamHandle?
        var deviceId: synDeviceId = 0
        XCTAssertEqual(api.synDeviceAcquireByModuleId!(&deviceId, 1), synSuccess)
        XCTAssertEqual(api.synStreamCreateGeneric!(&stream, deviceId, 0), synSuccess)
        var params = HpuAddBiasParams(rows: 0, width: 0)
        let status = withUnsafePointer(to: &params) {
            api.synLaunchKernel!(stream, HPU_GUID_ADD_BIAS, $0, MemoryLayout<HpuAddBiasParams>.size, [0, 0], 2)
        }
        XCTAssertEqual(status, synUnsupported)
        var detail = [CChar](repeating: 0, count: 512)
        _ = api.hpuGetLastErrorDetail!(&detail, detail.count)
        XCTAssertTrue(String(cString: detail).contains("serves ABI 1.0"), String(cString: detail))
        XCTAssertEqual(api.synDeviceRelease!(deviceId), synSuccess)
        // The open HPUDevice keeps the copy initialised until here.
        withExtendedLifetime(device) {}
    }

    func testAMalformedVersionHookIsRefusedNotIgnored() throws {
        XCTAssertThrowsError(try openStubCopy(named: "hpu-stub-abi-bad", minor: "7", module: 0)) { error in
            guard let error = error as? DeviceError else { return XCTFail("not a DeviceError: \(error)") }
            XCTAssertEqual(error.kind, .plugin)
            XCTAssertTrue(error.message.contains("refuses ABI version 1.3"), error.message)
        }
    }
}
