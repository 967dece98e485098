// Shared fixtures: a small Llama-shaped checkpoint, temporary directories, child processes, stderr capture.
import DraftCheckpoint
import Foundation
import XCTest

/// A small model's state, laid out the way the trainer will: HF Llama names in /model, AdamW moments in /optimizer.
struct SampleState {
    static let shapes: [(String, [Int])] = [
        ("model.embed_tokens.weight", [64, 16]),
        ("model.layers.0.input_layernorm.weight", [16]),
        ("model.layers.0.self_attn.q_proj.weight", [16, 16]),
        ("model.layers.0.mlp.down_proj.weight", [16, 40]),
        ("model.norm.weight", [16]),
    ]
    let step: Int
    var parameters: [[Float]]
    var expAvg: [[Float]]
    var expAvgSq: [[Float]]
    let cursor: [Int64]
    let rng: [Int64]
    let config = "run: {name: test, seed: 1234}\nmodel: {arch: llama, dim: 16}\n" + String(repeating: "# pad\n", count: 20_000)

    /// Random bit patterns (NaN payloads and subnormals included): a round trip must keep every bit.
    init(step: Int, seed: UInt64 = 42) {
        var generator = SplitMix(state: seed &+ UInt64(step))
        func tensor(_ count: Int) -> [Float] { (0..<count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())) } }
        self.step = step
        parameters = Self.shapes.map { tensor($0.1.reduce(1, *)) }
        expAvg = Self.shapes.map { tensor($0.1.reduce(1, *)) }
        expAvgSq = Self.shapes.map { tensor($0.1.reduce(1, *)) }
        cursor = [Int64(step) * 8, 3, -1]
        rng = [Int64(bitPattern: generator.next()), Int64(bitPattern: generator.next())]
    }

    var rootAttributes: KeyValuePairs<String, CheckpointAttribute> {
        ["step": .int(Int64(step)), "tokens_seen": .int(Int64(step) * 1024), "stage": .string("pretrain"),
         "world_size": .int(8), "config_yaml": .string(config), "tokenizer_sha256": .string(String(repeating: "ab", count: 32)),
         "betas": .doubles([0.9, 0.95]), "empty": .ints([])]
    }

    func write(_ writer: inout CheckpointWriter) throws {
        try writer.setAttributes(rootAttributes)
        for (index, (name, shape)) in Self.shapes.enumerated() {
            try parameters[index].withUnsafeBufferPointer {
                try writer.write(TensorSource(name: name, shape: shape, values: $0), to: .model)
            }
        }
        try writer.setAttributes(["step": .int(Int64(step)), "lr": .double(6e-4)], in: .optimizer)
        for (index, (name, shape)) in Self.shapes.enumerated() {
            try expAvg[index].withUnsafeBufferPointer {
                try writer.write(TensorSource(name: name + ".exp_avg", shape: shape, values: $0), to: .optimizer)
            }
            try expAvgSq[index].withUnsafeBufferPointer {
                try writer.write(TensorSource(name: name + ".exp_avg_sq", shape: shape, values: $0), to: .optimizer)
            }
        }
        try writer.writeInt64s("cursor", cursor, to: .data)
        try writer.setAttribute("sample_order_seed", .int(1234), in: .data)
        try writer.writeInt64s("state", rng, to: .rng)
    }

    var tensorCount: Int { Self.shapes.count * 3 }

    @discardableResult
    func save(to store: CheckpointStore) throws -> SavedCheckpoint {
        try store.save(step: step, expectedTensorCount: tensorCount) { try write(&$0) }
    }
}

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func makeTemporaryDirectory(_ name: String = #function) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("swiftdraft-ckpt-\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func bitPatterns(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

func directoryNames(_ url: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
}

/// Finds an executable on PATH, or nil.
func which(_ program: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(program)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Runs a program to completion and returns its exit status and combined output.
func runProgram(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Everything written to file descriptor 2 while `body` runs (HDF5 prints its error stack there by default).
func capturingStandardError(_ body: () throws -> Void) rethrows -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("stderr-\(UUID().uuidString)").path
    let capture = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    let saved = dup(2)
    fflush(stderr)
    dup2(capture, 2)
    defer {
        fflush(stderr)
        dup2(saved, 2)
        close(saved)
        close(capture)
        unlink(path)
    }
    try body()
    fflush(stderr)
    return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}
