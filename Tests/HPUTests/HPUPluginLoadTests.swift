import DraftDevice
import Foundation
import XCTest

/// Every way a plugin can fail to load ends in a DeviceError naming the library's path and the problem.
final class HPUPluginLoadTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory()
    }

    override func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private func assertLoadFails(_ path: String, containing problem: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try HPUDevice(pluginPath: path, module: 0), file: file, line: line) { error in
            guard let error = error as? DeviceError else {
                return XCTFail("not a DeviceError: \(error)", file: file, line: line)
            }
            XCTAssertEqual(error.kind, .plugin, file: file, line: line)
            XCTAssertTrue(error.message.contains(path), "message lacks the path: \(error.message)", file: file, line: line)
            XCTAssertTrue(error.message.contains(problem), "message lacks '\(problem)': \(error.message)",
                          file: file, line: line)
        }
    }

    /// Builds a fake plugin whose entry point returns a table with the given header, with `cc -shared`.
    private func fakePlugin(_ name: String, structSize: String, version: String, returnsNull: Bool = false) throws -> String {
        let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let compiler else { throw XCTSkip("no C compiler at /usr/bin/cc to build a fake plugin") }
        let source = directory.appendingPathComponent("\(name).c")
        let library = directory.appendingPathComponent("lib\(name).so")
        try """
        #include <stddef.h>
        #include <stdint.h>
        struct Table { size_t struct_size; uint32_t abi_version; uint32_t reserved; void* functions[20]; };
        static const struct Table table = { \(structSize), \(version), 0, {0} };
        const struct Table* hpuGetPluginApi(uint32_t abi_version) {
            (void)abi_version;
            return \(returnsNull ? "NULL" : "&table");
        }
        """.write(to: source, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler)
        process.arguments = ["-shared", "-fPIC", "-o", library.path, source.path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(compiler) failed to build \(library.path)")
        return library.path
    }

    func testMissingFile() {
        let path = directory.appendingPathComponent("libabsent-plugin.so").path
        assertLoadFails(path, containing: "no such file")
    }

    func testLibraryWithoutEntrySymbol() throws {
        let candidates = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                          "/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
        guard let libm = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw XCTSkip("libm.so.6 not found at \(candidates)")
        }
        assertLoadFails(libm, containing: "no entry symbol hpuGetPluginApi")
    }

    func testNotALibrary() throws {
        let path = directory.appendingPathComponent("libtext.so").path
        try "not an ELF file".write(toFile: path, atomically: true, encoding: .utf8)
        assertLoadFails(path, containing: "cannot be loaded")
    }

    func testUnknownABIVersion() throws {
        let path = try fakePlugin("future", structSize: "sizeof table", version: "(99u << 16) | 3u")
        assertLoadFails(path, containing: "unknown ABI version 99.3")
    }

    func testStructSizeTooSmall() throws {
        let path = try fakePlugin("short", structSize: "16", version: "(1u << 16)")
        assertLoadFails(path, containing: "struct_size 16 is too small")
    }

    func testPluginRefusingTheHostVersion() throws {
        let path = try fakePlugin("refusing", structSize: "sizeof table", version: "(1u << 16)", returnsNull: true)
        assertLoadFails(path, containing: "refuses ABI version 1.3")
    }

    func testNullFunctionInTable() throws {
        let path = try fakePlugin("hollow", structSize: "sizeof table", version: "(1u << 16)")
        assertLoadFails(path, containing: "null synInitialize")
    }

    func testModuleOutOfRange() throws {
        let stub = try builtStubPath()
        XCTAssertThrowsError(try HPUDevice(pluginPath: stub, module: 4096)) { error in
            XCTAssertTrue("\(error)".contains("module 4096 does not exist"), "\(error)")
        }
    }

    func testPluginAndModuleResolution() throws {
        XCTAssertEqual(HPUPlugin.resolvePath("/x/lib.so", environment: ["SWIFTDRAFT_HPU_PLUGIN": "/y/lib.so"]), "/x/lib.so")
        XCTAssertEqual(HPUPlugin.resolvePath(nil, environment: ["SWIFTDRAFT_HPU_PLUGIN": "/y/lib.so"]), "/y/lib.so")
        XCTAssertTrue(HPUPlugin.resolvePath(nil, environment: [:]).hasSuffix("/" + HPUPlugin.stubFileName))

        XCTAssertEqual(try HPUPlugin.resolveModule(5, environment: ["HABANA_VISIBLE_MODULES": "1"]), 5)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, environment: ["HABANA_VISIBLE_MODULES": "3"]), 3)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, environment: ["HABANA_VISIBLE_MODULES": "0,2,4,6",
                                                                       "OMPI_COMM_WORLD_LOCAL_RANK": "2"]), 4)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, environment: ["OMPI_COMM_WORLD_LOCAL_RANK": "7"]), 7)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, environment: [:]), 0)
        XCTAssertThrowsError(try HPUPlugin.resolveModule(nil, environment: ["HABANA_VISIBLE_MODULES": "a,b"]))
        XCTAssertThrowsError(try HPUPlugin.resolveModule(nil, environment: ["HABANA_VISIBLE_MODULES": "0,1",
                                                                             "OMPI_COMM_WORLD_LOCAL_RANK": "2"]))
    }

    /// The communicator's local rank (whatever launcher set it) picks the module, over Open MPI's variable.
    func testCallersLocalRankPicksTheModule() throws {
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, localRank: 3, environment: [:]), 3)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, localRank: 1, environment: ["OMPI_COMM_WORLD_LOCAL_RANK": "0"]), 1)
        XCTAssertEqual(try HPUPlugin.resolveModule(nil, localRank: 2, environment: ["HABANA_VISIBLE_MODULES": "4,5,6"]), 6)
        XCTAssertEqual(try HPUPlugin.resolveModule(7, localRank: 2, environment: [:]), 7)
        XCTAssertThrowsError(try HPUPlugin.resolveModule(nil, localRank: -1, environment: [:]))
    }
}

/// Out of device memory names the module, the bytes asked and the bytes free.
final class HPUMemoryTests: XCTestCase {
    func testOutOfDeviceMemoryNamesModuleAskedAndFree() throws {
        // A private copy of the stub is a separate library instance, initialised afresh with a 1 MiB module size
        // whatever other tests did to the shared one.
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("libhpu-stub-small.so").path
        try FileManager.default.copyItem(atPath: try builtStubPath(), toPath: copy)
        let previous = ProcessInfo.processInfo.environment["HPU_STUB_MEMORY_MB"]
        setenv("HPU_STUB_MEMORY_MB", "1", 1)
        defer {
            if let previous { setenv("HPU_STUB_MEMORY_MB", previous, 1) } else { unsetenv("HPU_STUB_MEMORY_MB") }
        }

        let device = try HPUDevice(pluginPath: copy, module: 2)
        XCTAssertEqual(try device.memoryInfo().total, 1 << 20)
        XCTAssertThrowsError(try device.allocate(Float.self, count: 512 * 1024)) { error in
            guard let error = error as? DeviceError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.kind, .outOfMemory)
            XCTAssertTrue(error.message.contains("module 2: asked 2097152 bytes, 1048576 free"), error.message)
        }
        let half = try device.allocate(Float.self, count: 128 * 1024)
        XCTAssertThrowsError(try device.allocate(Float.self, count: 150_000)) { error in
            XCTAssertTrue("\(error)".contains("asked 600000 bytes, 524288 free"), "\(error)")
        }
        XCTAssertThrowsError(try device.allocate(Float.self, count: Int.max / 2)) { error in
            XCTAssertEqual((error as? DeviceError)?.kind, .invalidArgument, "\(error)")
        }
        device.free(half)
        XCTAssertEqual(try device.memoryInfo().free, 1 << 20, "free returns the memory")
        _ = try device.allocate(Float.self, count: 150_000)
    }
}
