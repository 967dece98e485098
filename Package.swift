// swift-tools-version:6.0
// SwiftDraft: a data-parallel trainer for speculative-decoding draft models.
// One module per layer: C shims -> errors, formats -> device & kernels -> model, tokenizer -> data -> distributed ->
// checkpoint -> inference -> training -> CLI.
import Foundation
import PackageDescription

// -Ounchecked (no overflow or bounds traps) only on the numeric kernels, where it pays; every module that parses what
// a user gives (GGUF, JSON, shards, checkpoints, configs) keeps Swift's checks and builds with plain -O.
let optimised: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

// The quantized decode kernels need AVX2/FMA/F16C (better AVX-512) to be worth running: baseline x86-64 (SSE2)
// widens nibbles and halves through library calls. Swift has no `-march=native`, so the manifest picks the host's
// level from /proc/cpuinfo (override: SWIFTDRAFT_TARGET_CPU, "generic" for none). A release build then runs only on
// machines with the features of the one that built it, as llama.cpp's GGML_NATIVE builds do.
let hostTargetCPU: String? = {
    if let forced = ProcessInfo.processInfo.environment["SWIFTDRAFT_TARGET_CPU"] {
        return forced == "generic" ? nil : forced
    }
    #if arch(x86_64) && os(Linux)
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(flagsLine.split(separator: " ").map(String.init))
    if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq", "f16c", "fma"]) { return "skylake-avx512" }
    if flags.isSuperset(of: ["avx2", "fma", "f16c"]) { return "haswell" }
    #endif
    return nil
}()
let deviceOptimised: [SwiftSetting] = optimised + (hostTargetCPU.map {
    [.unsafeFlags(["-Xfrontend", "-target-cpu", "-Xfrontend", $0], .when(configuration: .release))]
} ?? [])

let package = Package(
    name: "SwiftDraft",
    products: [
        .executable(name: "swiftdraft", targets: ["swiftdraft"]),
        // The HPU stub plugin: a shared library loaded with dlopen, like a vendor runtime would be.
        .library(name: "swiftdraft-hpu-stub", type: .dynamic, targets: ["HPUStub"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C libraries from Debian, with static-inline shims for the macros Swift cannot import.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        // The HPU plugin ABI (one C header) and the stub plugin implementing it on host memory.
        .target(name: "HPUPluginABI"),
        .target(name: "HPUStub", dependencies: ["HPUPluginABI", "CBLAS"],
                cSettings: [.unsafeFlags(["-O2"])]),

        // What every module's bad-input errors adopt, so the CLI maps them to exit 2.
        .target(name: "DraftErrors"),
        // File formats: GGUF, safetensors, ggml's quantized block types.
        .target(name: "DraftFormats", dependencies: ["DraftErrors"]),
        // Integer kernels for quantized weights times 8-bit activations (AVX-512 VNNI, chosen at run time).
        .target(name: "CQuantDot", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "DraftDevice", dependencies: ["CBLAS", "CQuantDot", "HPUPluginABI", "DraftFormats", "DraftErrors"],
                swiftSettings: deviceOptimised),
        .target(name: "DraftModel", dependencies: ["DraftDevice", "DraftFormats", "DraftErrors"], swiftSettings: optimised),
        .target(name: "DraftTokenizer", dependencies: ["DraftFormats", "DraftErrors",
                                                    .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "DraftData", dependencies: ["DraftTokenizer", "DraftErrors"]),
        .target(name: "DraftDistributed", dependencies: ["CMPI", "DraftErrors"]),
        .target(name: "DraftCheckpoint", dependencies: ["CHDF5", "DraftModel", "DraftDevice", "DraftErrors",
                                                 .product(name: "Yams", package: "Yams")]),
        .target(name: "DraftInference",
                dependencies: ["DraftDevice", "DraftFormats", "DraftModel", "DraftTokenizer", "DraftCheckpoint", "DraftErrors"]),
        // Drafts for other runtimes: Hugging Face directories and GGUF files.
        .target(name: "DraftExport",
                dependencies: ["DraftCheckpoint", "DraftFormats", "DraftModel", "DraftTokenizer", "DraftDevice", "DraftErrors"]),
        .target(name: "DraftTraining",
                dependencies: ["DraftDevice", "DraftModel", "DraftData", "DraftTokenizer", "DraftDistributed",
                               "DraftCheckpoint", "DraftFormats", "DraftErrors", .product(name: "Yams", package: "Yams")]),
        // Knowledge-distillation data: the target's responses (native or over HTTP) as loss-masked shards.
        .target(name: "DraftDistill", dependencies: ["DraftInference", "DraftData", "DraftTokenizer", "DraftFormats", "DraftErrors"]),
        .executableTarget(name: "swiftdraft",
                          dependencies: ["DraftTraining", "DraftInference", "DraftExport", "DraftDistill", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(name: "mpi-selftest", dependencies: ["DraftDistributed"], path: "Tests/MPISelfTest"),
        .executableTarget(name: "quant-bench", dependencies: ["DraftDevice", "DraftFormats"], path: "Benchmarks/QuantBench",
                          swiftSettings: optimised),
        .executableTarget(name: "checkpoint-crash-helper", dependencies: ["DraftCheckpoint"], path: "Tests/CheckpointCrashHelper"),
        .testTarget(name: "DraftFormatsTests", dependencies: ["DraftFormats", "DraftErrors"]),
        .testTarget(name: "DraftInferenceTests", dependencies: ["DraftInference", "DraftModel", "DraftDevice", "DraftFormats", "DraftTokenizer", "HPUPluginABI"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DraftModelTests", dependencies: ["DraftModel", "DraftDevice", "DraftFormats"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DraftTokenizerTests", dependencies: ["DraftTokenizer"]),
        .testTarget(name: "DraftDataTests", dependencies: ["DraftData", "DraftTokenizer"]),
        .testTarget(name: "DraftDistributedTests", dependencies: ["DraftDistributed"]),
        .testTarget(name: "DraftCheckpointTests", dependencies: ["DraftCheckpoint", "DraftModel", "DraftDevice"]),
        .testTarget(name: "DraftDistillTests", dependencies: ["DraftDistill", "DraftData", "DraftInference", "DraftTokenizer"]),
        .testTarget(name: "HPUTests", dependencies: ["HPUPluginABI", "DraftDevice"]),
        .testTarget(name: "DraftDeviceTests", dependencies: ["DraftDevice"]),
        .testTarget(name: "SwiftDraftCLITests",
                    dependencies: ["DraftTraining", "DraftData", "DraftDistill", "DraftCheckpoint", "DraftModel", "DraftDevice",
                                   "DraftDistributed", "DraftFormats", "DraftInference", "DraftTokenizer"],
                    resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
