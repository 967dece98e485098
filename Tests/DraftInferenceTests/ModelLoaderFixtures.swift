import DraftDevice
import DraftInference
import Foundation
import XCTest

/// The loaders' committed fixtures (`scripts/reference/inference_fixtures.py`) and the tools the tests run on them:
/// the tests' Python venv (numpy + gguf: `scripts/reference/numpy_decoder.py`) and llama.cpp's `llama-quantize`
/// (`scripts/build-llama-cpp.sh`, cached per machine).
enum LoaderFixtures {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let root: URL = {
        if let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) { return url }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    }()

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    struct Tiny {
        let name: String
        let architecture: String
        let hfDirectory: URL
        let gguf: URL
        /// transformers' logits per sequence, `(positions, vocab)` flattened.
        let logits: [[Float]]
    }

    struct Manifest {
        let vocab: Int
        let sequences: [[Int32]]
        let models: [Tiny]
    }

    static func manifest() throws -> Manifest {
        let data = try Data(contentsOf: url("tiny/manifest.json"))
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let vocab = try XCTUnwrap(j["vocab"] as? Int)
        let sequences = try XCTUnwrap(j["sequences"] as? [[Int]]).map { $0.map(Int32.init) }
        let models = try XCTUnwrap(j["models"] as? [String: [String: Any]])
        let tiny = try models.keys.sorted().map { name -> Tiny in
            let m = models[name]!
            let blob = try floats(url(try XCTUnwrap(m["logits"] as? String)))
            var split: [[Float]] = []
            var offset = 0
            for s in sequences {
                split.append(Array(blob[offset..<(offset + s.count * vocab)]))
                offset += s.count * vocab
            }
            return Tiny(name: name, architecture: try XCTUnwrap(m["architecture"] as? String),
                        hfDirectory: url(try XCTUnwrap(m["hf_dir"] as? String)),
                        gguf: url(try XCTUnwrap(m["gguf"] as? String)), logits: split)
        }
        return Manifest(vocab: vocab, sequences: sequences, models: tiny)
    }

    /// Little-endian float32 values of a file.
    static func floats(_ url: URL) throws -> [Float] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    static let cache: URL = {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty {
            return URL(fileURLWithPath: (c as NSString).expandingTildeInPath)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }()

    /// The tests' venv python (created by `scripts/python-env.sh` when missing).
    static let python: Result<String, Failure> = Result {
        if let p = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"], !p.isEmpty { return p }
        let out = try execute("/bin/bash", [repo.appendingPathComponent("scripts/python-env.sh").path])
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }.mapError { Failure(description: "scripts/python-env.sh failed: \($0)") }

    /// llama.cpp's tool directory, built once per machine by `scripts/build-llama-cpp.sh`.
    static let llamaBin: Result<String, Failure> = Result {
        let out = try execute("/bin/bash", [repo.appendingPathComponent("scripts/build-llama-cpp.sh").path],
                              environment: ["LLAMA_TARGETS": "llama-quantize"])
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }.mapError { Failure(description: "scripts/build-llama-cpp.sh failed: \($0)") }

    /// `llama-quantize --pure` of `input` to `type` (a llama.cpp type name), written to `output`.
    static func quantize(_ input: URL, to type: String, output: URL) throws {
        let bin = try llamaBin.get()
        _ = try execute("\(bin)/llama-quantize", ["--pure", input.path, output.path, type])
    }

    /// `numpy_decoder.py`'s float64 logits (rounded to float32) of `sequences` on the GGUF `model`.
    static func numpyLogits(_ model: URL, _ sequences: [[Int32]]) throws -> [[Float]] {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("numpy-logits-\(UUID()).f32")
        defer { try? FileManager.default.removeItem(at: out) }
        var args = [repo.appendingPathComponent("scripts/reference/numpy_decoder.py").path, model.path, "--out", out.path]
        for s in sequences { args += ["--ids", s.map(String.init).joined(separator: " ")] }
        _ = try execute(try python.get(), args)
        let blob = try floats(out)
        let vocab = blob.count / sequences.reduce(0) { $0 + $1.count }
        var split: [[Float]] = [], offset = 0
        for s in sequences {
            split.append(Array(blob[offset..<(offset + s.count * vocab)]))
            offset += s.count * vocab
        }
        return split
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    @discardableResult
    static func execute(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // stderr to a file, so a chatty child cannot block on a full pipe while stdout is read.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("loader-test-\(UUID()).err")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let err = (try? Data(contentsOf: errURL)) ?? Data()
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus): "
                + String(decoding: err.suffix(2000), as: UTF8.self))
        }
        return data
    }
}

/// Logits of every position of each sequence (each from position 0 in a fresh cache), `(positions, vocab)` flattened.
func allLogits(_ model: LoadedModel, device: any Device, sequences: [[Int32]]) throws -> [[Float]] {
    let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
    return try sequences.map { seq in
        let cache = try KVCache(device: device, layers: model.config.layers, slotCount: 1, capacity: seq.count,
                                kvHeads: model.config.kvHeads, headDim: model.config.headDim)
        let l = try engine.forward([SequenceChunk(slot: 0, tokens: seq, start: 0)], cache: cache, select: .allRows)
        var flat: [Float] = []
        flat.reserveCapacity(l.rowCount * l.vocab)
        for r in 0..<l.rowCount { flat.append(contentsOf: l.row(r)) }
        return flat
    }
}

/// `max |a - b|` over every sequence's logits.
func maxAbsDifference(_ a: [[Float]], _ b: [[Float]]) -> Double {
    var worst = 0.0
    for (x, y) in zip(a, b) {
        guard x.count == y.count else { return .infinity }
        for (p, q) in zip(x, y) {
            if p.isNaN || q.isNaN { return .infinity }
            worst = max(worst, abs(Double(p) - Double(q)))
        }
    }
    return worst
}
