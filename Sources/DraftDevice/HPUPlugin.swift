import Foundation
import HPUPluginABI

#if canImport(Glibc)
import Glibc
#endif

/// A loaded HPU plugin library and its API table (see `Sources/HPUPluginABI/include/hpu_plugin.h`).
///
/// One instance per plugin path per process, never unloaded: a plugin may own worker threads and its table must
/// outlive every device. The plugin is initialised when its first device opens and destroyed when its last one
/// closes, so a later device sees a fresh plugin (and re-read environment such as `HPU_STUB_MEMORY_MB`).
public final class HPUPlugin {
    /// The library's path as given to `dlopen`.
    public let path: String
    /// The plugin's `abi_version` and `struct_size`, as reported.
    public let abiVersion: UInt32
    public let structSize: Int
    /// The table, copied (only the bytes the plugin declared), with every 1.0 function checked non-null.
    public let api: HpuPluginApi

    private let lock = NSLock()
    private var openDevices = 0

    private static let cacheLock = NSLock()
    private static var cache: [String: HPUPlugin] = [:]

    /// The file name of the stub plugin the package builds.
    public static let stubFileName = "libswiftdraft-hpu-stub.so"

    /// Bytes of `HpuPluginApi` a plugin must provide for this host: offset + size of the last 1.0 field.
    public static var requiredStructSize: Int {
        MemoryLayout<HpuPluginApi>.offset(of: \HpuPluginApi.synLaunchKernel).unsafelyUnwrapped
            + MemoryLayout<synLaunchKernel_fn?>.size
    }

    /// Loads (or finds already loaded) the plugin at `path`, validating its entry point and table.
    public static func load(path: String) throws -> HPUPlugin {
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let plugin = cache[path] { return plugin }
        let plugin = try HPUPlugin(path: path)
        cache[path] = plugin
        return plugin
    }

    private init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw DeviceError(.plugin, "HPU plugin \(path): no such file")
        }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw DeviceError(.plugin, "HPU plugin \(path): cannot be loaded: \(reason)")
        }
        // From here on failures leave the library mapped: unloading a half-checked plugin could run its destructors
        // against state it never set up, and a failed load ends the run anyway.
        guard let symbol = dlsym(handle, HPU_PLUGIN_ENTRY_SYMBOL) else {
            throw DeviceError(.plugin,
                              "HPU plugin \(path): no entry symbol \(HPU_PLUGIN_ENTRY_SYMBOL) (not an HPU plugin)")
        }
        let entry = unsafeBitCast(symbol, to: hpuGetPluginApi_fn.self)
        let hostVersion = UInt32(HPU_PLUGIN_ABI_MAJOR << 16 | HPU_PLUGIN_ABI_MINOR)
        guard let table = entry(hostVersion) else {
            throw DeviceError(.plugin, "HPU plugin \(path): refuses ABI version \(Self.versionString(hostVersion)) "
                                  + "asked by this host (\(HPU_PLUGIN_ENTRY_SYMBOL) returned null)")
        }
        // Read the two header fields alone first: a short table must not be read past its declared end.
        let header = UnsafeRawPointer(table)
        let structSize = header.load(as: Int.self)
        let version = header.load(fromByteOffset: MemoryLayout<Int>.size, as: UInt32.self)
        guard version >> 16 == UInt32(HPU_PLUGIN_ABI_MAJOR) else {
            throw DeviceError(.plugin, "HPU plugin \(path): unknown ABI version \(Self.versionString(version)) "
                                  + "(this host speaks \(HPU_PLUGIN_ABI_MAJOR).x)")
        }
        guard structSize >= Self.requiredStructSize else {
            throw DeviceError(.plugin, "HPU plugin \(path): struct_size \(structSize) is too small: ABI "
                                  + "\(Self.versionString(version)) needs at least \(Self.requiredStructSize) bytes")
        }
        var api = HpuPluginApi()
        withUnsafeMutableBytes(of: &api) { destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(start: header,
                                                                count: min(structSize, destination.count)))
        }
        let functions: [(String, Bool)] = [
            ("synInitialize", api.synInitialize != nil), ("synDestroy", api.synDestroy != nil),
            ("synStatusGetBriefDescription", api.synStatusGetBriefDescription != nil),
            ("hpuGetLastErrorDetail", api.hpuGetLastErrorDetail != nil),
            ("synDeviceGetCount", api.synDeviceGetCount != nil),
            ("synDeviceAcquireByModuleId", api.synDeviceAcquireByModuleId != nil),
            ("synDeviceRelease", api.synDeviceRelease != nil),
            ("synDeviceGetMemoryInfo", api.synDeviceGetMemoryInfo != nil),
            ("synDeviceMalloc", api.synDeviceMalloc != nil), ("synDeviceFree", api.synDeviceFree != nil),
            ("synStreamCreateGeneric", api.synStreamCreateGeneric != nil),
            ("synStreamDestroy", api.synStreamDestroy != nil),
            ("synStreamSynchronize", api.synStreamSynchronize != nil),
            ("synMemCopyAsync", api.synMemCopyAsync != nil), ("synEventCreate", api.synEventCreate != nil),
            ("synEventRecord", api.synEventRecord != nil), ("synEventSynchronize", api.synEventSynchronize != nil),
            ("synEventElapsedTime", api.synEventElapsedTime != nil), ("synEventDestroy", api.synEventDestroy != nil),
            ("synLaunchKernel", api.synLaunchKernel != nil),
        ]
        if let missing = functions.first(where: { !$0.1 }) {
            throw DeviceError(.plugin, "HPU plugin \(path): the ABI table has a null \(missing.0)")
        }
        self.abiVersion = version
        self.structSize = structSize
        self.api = api
    }

    static func versionString(_ version: UInt32) -> String { "\(version >> 16).\(version & 0xFFFF)" }

    /// The ABI version that brought the decode kernels (rotary at positions, KV cache, attention over it, bias):
    /// what inference needs, whatever MINOR this host was built with.
    public static let inferenceABIVersion = UInt32(HPU_PLUGIN_ABI_MAJOR << 16 | HPU_PLUGIN_ABI_MINOR_DECODE)

    /// Whether the plugin has the decode kernels. Its MAJOR is this host's (checked at load), so the MINOR decides.
    public var implementsDecodeKernels: Bool { abiVersion & 0xFFFF >= Self.inferenceABIVersion & 0xFFFF }

    // MARK: Lifetime

    /// Initialises the plugin if this is its first open device.
    func deviceOpened() throws {
        lock.lock()
        defer { lock.unlock() }
        if openDevices == 0 {
            let status = api.synInitialize.unsafelyUnwrapped()
            // Someone else in the process (a test driving the ABI directly) may have initialised it already.
            if status != synSuccess && status != synObjectAlreadyInitialized {
                throw error(status, "synInitialize")
            }
        }
        openDevices += 1
    }

    func deviceClosed() {
        lock.lock()
        defer { lock.unlock() }
        openDevices -= 1
        if openDevices == 0 { _ = api.synDestroy.unsafelyUnwrapped() }
    }

    // MARK: Errors

    /// The plugin's brief description of `status` and, if any, its detail of the last failure on this thread.
    public func describe(_ status: synStatus) -> String {
        var brief = [CChar](repeating: 0, count: 128)
        var detail = [CChar](repeating: 0, count: 512)
        _ = api.synStatusGetBriefDescription.unsafelyUnwrapped(status, &brief, brief.count)
        _ = api.hpuGetLastErrorDetail.unsafelyUnwrapped(&detail, detail.count)
        let briefText = String(cString: brief), detailText = String(cString: detail)
        return detailText.isEmpty ? "\(briefText) (status \(status.rawValue))"
            : "\(briefText) (status \(status.rawValue)): \(detailText)"
    }

    /// A `DeviceError` for a failed call, its kind chosen from the status.
    func error(_ status: synStatus, _ context: String) -> DeviceError {
        let kind: DeviceError.Kind
        switch status {
        case synOutOfDeviceMemory, synOutOfHostMemory: kind = .outOfMemory
        case synInvalidArgument, synInvalidDeviceAddress, synInvalidHandle, synKernelFailed: kind = .invalidArgument
        case synUnsupported: kind = .unsupported
        default: kind = .plugin
        }
        return DeviceError(kind, "\(context): \(describe(status))")
    }

    // MARK: Choosing a plugin and a module

    /// The plugin path: `explicit` if given, else `$SWIFTDRAFT_HPU_PLUGIN`, else the stub next to the running
    /// executable (the package's build directory, for both `swiftdraft` and the test runner).
    public static func resolvePath(_ explicit: String?,
                                   environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let fromEnvironment = environment["SWIFTDRAFT_HPU_PLUGIN"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return executableDirectory().appendingPathComponent(stubFileName).path
    }

    /// The module for this process: `explicit` if given, else `HABANA_VISIBLE_MODULES` (one id, or a comma list
    /// indexed by the local rank), else `OMPI_COMM_WORLD_LOCAL_RANK`, else 0.
    public static func resolveModule(_ explicit: Int?,
                                     environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        if let explicit {
            guard explicit >= 0 else { throw DeviceError(.invalidArgument, "hpu: module \(explicit) is negative") }
            return explicit
        }
        let localRankText = environment["OMPI_COMM_WORLD_LOCAL_RANK"]
        let localRank: Int?
        if let localRankText {
            guard let rank = Int(localRankText), rank >= 0 else {
                throw DeviceError(.invalidArgument,
                                  "hpu: OMPI_COMM_WORLD_LOCAL_RANK=\(localRankText) is not a non-negative integer")
            }
            localRank = rank
        } else {
            localRank = nil
        }
        if let visible = environment["HABANA_VISIBLE_MODULES"], !visible.isEmpty {
            let entries = visible.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let modules = entries.compactMap { Int($0) }
            guard modules.count == entries.count, modules.allSatisfy({ $0 >= 0 }) else {
                throw DeviceError(.invalidArgument,
                                  "hpu: HABANA_VISIBLE_MODULES=\(visible) is not a comma list of module ids")
            }
            if modules.count == 1 { return modules[0] }
            let index = localRank ?? 0
            guard index < modules.count else {
                throw DeviceError(.invalidArgument, "hpu: local rank \(index) has no module in "
                                      + "HABANA_VISIBLE_MODULES=\(visible) (\(modules.count) listed)")
            }
            return modules[index]
        }
        return localRank ?? 0
    }

    static func executableDirectory() -> URL {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let executable = length > 0 ? String(cString: buffer) : CommandLine.arguments.first ?? "."
        return URL(fileURLWithPath: executable).deletingLastPathComponent()
    }
}
