// swift-tools-version:6.0
// SwiftDraft: a data-parallel trainer for speculative-decoding draft models.
// One module per layer: C shims -> errors, formats -> device & kernels -> model, tokenizer -> data -> distributed ->
// checkpoint -> inference -> training -> CLI.
import PackageDescription

// -Ounchecked (no overflow or bounds traps) only on the numeric kernels, where it pays; every module that parses what
// a user gives (GGUF, JSON, shards, checkpoints, configs) keeps Swift's checks and builds with plain -O.
let optimised: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

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
        .target(name: "DraftDevice", dependencies: ["CBLAS", "HPUPluginABI", "DraftFormats", "DraftErrors"],
                swiftSettings: optimised),
        .target(name: "DraftModel", dependencies: ["DraftDevice", "DraftFormats", "DraftErrors"], swiftSettings: optimised),
        .target(name: "DraftTokenizer", dependencies: ["DraftFormats", "DraftErrors"]),
        .target(name: "DraftData", dependencies: ["DraftTokenizer", "DraftErrors"]),
        .target(name: "DraftDistributed", dependencies: ["CMPI", "DraftErrors"]),
        .target(name: "DraftCheckpoint", dependencies: ["CHDF5", "DraftModel", "DraftDevice", "DraftErrors"]),
        .target(name: "DraftInference",
                dependencies: ["DraftDevice", "DraftFormats", "DraftModel", "DraftTokenizer", "DraftCheckpoint", "DraftErrors"]),
        .target(name: "DraftTraining",
                dependencies: ["DraftDevice", "DraftModel", "DraftData", "DraftTokenizer", "DraftDistributed",
                               "DraftCheckpoint", "DraftFormats", "DraftErrors", .product(name: "Yams", package: "Yams")]),
        .executableTarget(name: "swiftdraft",
                          dependencies: ["DraftTraining", "DraftInference", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(name: "mpi-selftest", dependencies: ["DraftDistributed"], path: "Tests/MPISelfTest"),
        .executableTarget(name: "checkpoint-crash-helper", dependencies: ["DraftCheckpoint"], path: "Tests/CheckpointCrashHelper"),
        .testTarget(name: "DraftFormatsTests", dependencies: ["DraftFormats", "DraftErrors"]),
        .testTarget(name: "DraftInferenceTests", dependencies: ["DraftInference", "DraftModel", "DraftDevice", "DraftFormats"]),
        .testTarget(name: "DraftModelTests", dependencies: ["DraftModel", "DraftDevice"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DraftTokenizerTests", dependencies: ["DraftTokenizer"]),
        .testTarget(name: "DraftDataTests", dependencies: ["DraftData", "DraftTokenizer"]),
        .testTarget(name: "DraftDistributedTests", dependencies: ["DraftDistributed"]),
        .testTarget(name: "DraftCheckpointTests", dependencies: ["DraftCheckpoint"]),
        .testTarget(name: "HPUTests", dependencies: ["HPUPluginABI", "DraftDevice"]),
        .testTarget(name: "SwiftDraftCLITests", dependencies: ["DraftTraining", "DraftData", "DraftCheckpoint"]),
    ],
    swiftLanguageModes: [.v5]
)
