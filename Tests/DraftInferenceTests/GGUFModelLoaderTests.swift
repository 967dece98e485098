import DraftDevice
import DraftErrors
import DraftFormats
import DraftInference
import Foundation
import XCTest

/// GGUF files of every architecture and tensor type: the tiny models' F16 GGUFs (llama.cpp's convert_hf_to_gguf.py)
/// quantized at test time with `llama-quantize --pure` to each type, loaded with `loadGGUFModel`, and compared with the
/// float64 numpy forward of the same file (`scripts/reference/numpy_decoder.py`, weights dequantized by
/// `gguf.quants.dequantize`); and bad files, each refused with one line naming the file and what was expected.
final class GGUFModelLoaderTests: XCTestCase {
    /// Max |logit difference| allowed per type against the dequantized float64 reference (logits here reach 4-8).
    /// The weights are the same numbers on both sides (the CPU kernels dequantize blocks exactly and accumulate in
    /// fp32), so what is left is fp32 rounding, the same for every type: measured 3.6e-6 .. 7.6e-6 over the 44
    /// model x type cases. 3e-5 leaves 4x headroom yet fails any real block-decoding, row-order or rope mistake
    /// (those move logits by 1e-2 and more).
    static let tolerances: [(type: String, ggml: GGMLType, tolerance: Double)] = [
        ("F32", .f32, 3e-5), ("F16", .f16, 3e-5), ("BF16", .bf16, 3e-5), ("Q8_0", .q8_0, 3e-5),
        ("Q4_0", .q4_0, 3e-5), ("Q4_1", .q4_1, 3e-5), ("Q5_0", .q5_0, 3e-5), ("Q5_1", .q5_1, 3e-5),
        ("Q4_K", .q4_K, 3e-5), ("Q5_K", .q5_K, 3e-5), ("Q6_K", .q6_K, 3e-5),
    ]

    /// The integer kernels' tolerance (Q4_0, Q4_1, Q8_0 on 16-bit quantized activations, which every product of
    /// these sequences longer than 15 tokens runs): measured 3.1e-4 .. 6.0e-4 over the 12 model x type cases.
    static let int16Tolerance = 2e-3

    func testEveryArchitectureAndTensorTypeMatchesNumpyReference() throws {
        let manifest = try LoaderFixtures.manifest()
        let device = CPUDevice(threads: 2, quantizedActivations: .exact)
        let integer: CPUDevice? = integerKernelsAvailable ? CPUDevice(threads: 2, quantizedActivations: .int16) : nil
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-types-\(UUID())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        var unsupported: [String] = []
        for m in manifest.models {
            for (typeName, ggml, tolerance) in Self.tolerances {
                let file = tmp.appendingPathComponent("\(m.name).\(typeName).gguf")
                try LoaderFixtures.quantize(m.gguf, to: typeName, output: file)
                let model = try loadGGUFModel(path: file.path, device: device)
                XCTAssertEqual(model.config.architecture, m.architecture)
                // --pure gives every matrix the type: the load must have kept it (no silent expansion).
                let kept = try GGUFFile(path: file.path).tensors.filter { $0.dimensions.count == 2 }
                XCTAssertTrue(kept.allSatisfy { $0.type == ggml }, "\(m.name) \(typeName): \(kept.map(\.type.name))")
                let ours: [[Float]]
                do {
                    ours = try allLogits(model, device: device, sequences: manifest.sequences)
                } catch let e as DeviceError where e.kind == .unsupported {
                    unsupported.append("\(m.name) \(typeName): \(e)")
                    continue
                }
                let reference = try LoaderFixtures.numpyLogits(file, manifest.sequences)
                let diff = maxAbsDifference(ours, reference)
                print("GGUF \(m.name) \(typeName): max |logit - numpy(dequantized)| = \(String(format: "%.2e", diff)) (tolerance \(tolerance))")
                XCTAssertLessThanOrEqual(diff, tolerance, "\(m.name) \(typeName)")
                if let integer, [GGMLType.q4_0, .q4_1, .q8_0].contains(ggml) {
                    let model = try loadGGUFModel(path: file.path, device: integer)
                    let diff = maxAbsDifference(try allLogits(model, device: integer, sequences: manifest.sequences),
                                                reference)
                    print("GGUF \(m.name) \(typeName), int16 activations: max |logit - numpy(dequantized)| = \(String(format: "%.2e", diff)) (tolerance \(Self.int16Tolerance))")
                    XCTAssertLessThanOrEqual(diff, Self.int16Tolerance, "\(m.name) \(typeName) int16")
                }
                if typeName == "F32" {
                    // F32 is the unquantized file: it must also be transformers' model.
                    let vsHF = maxAbsDifference(ours, m.logits)
                    print("GGUF \(m.name) F32: max |logit - transformers(HF dir)| = \(String(format: "%.2e", vsHF))")
                    XCTAssertLessThanOrEqual(vsHF, 1e-4, m.name)
                }
            }
        }
        if !unsupported.isEmpty {
            throw XCTSkip("the CPU device has no quantized products yet (quant branch): \(unsupported.count) cases not run, e.g. \(unsupported[0])")
        }
    }

    func testMetadataTokenizerAndStops() throws {
        let device = CPUDevice(threads: 1)
        let model = try loadGGUFModel(path: LoaderFixtures.url("tiny/llama3-rope.f16.gguf").path, device: device)
        XCTAssertEqual(model.config.layers, 1)
        XCTAssertEqual(model.config.kvHeads, 2)
        XCTAssertEqual(model.config.contextLength, 256)
        let plain = DecoderConfig.ropeInverseFrequencies(theta: 10_000, headDim: 64)
        XCTAssertEqual(model.config.ropeInverseFrequencies[31], plain[31] / 8, accuracy: plain[31] * 1e-6,
                       "rope_freqs.weight divides the long wavelengths by the llama3 factor")
        XCTAssertEqual(model.config.ropeInverseFrequencies[0], plain[0])
        XCTAssertTrue(model.chatTemplate?.contains("<|im_start|>") ?? false)
        XCTAssertEqual(model.config.bosTokenID, 1)
        XCTAssertEqual(model.config.eosTokenIDs.first, 2)
        XCTAssertEqual(model.tokenizer.vocabSize, 512)
        let hf = try loadHFModel(directory: LoaderFixtures.url("tiny/llama3-rope").path, device: device)
        XCTAssertEqual(model.tokenizer.encode("def insort(a, x):\n    return a"),
                       hf.tokenizer.encode("def insort(a, x):\n    return a"), "one tokenizer, two files")
        XCTAssertEqual(model.parameterCount, hf.parameterCount, "the same weights (rope_freqs is not a parameter)")
    }

    // MARK: bad input

    /// The fixture's bytes with `edit` applied, written to a temporary file.
    func patched(_ name: String, _ edit: (inout Data) throws -> Void) throws -> URL {
        var data = try Data(contentsOf: LoaderFixtures.url("tiny/\(name)"))
        try edit(&data)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID())-\(name)")
        try data.write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Offset just past the (unique) header string `s`.
    func offset(after s: String, in data: Data) throws -> Int {
        let range = try XCTUnwrap(data.range(of: Data(s.utf8)), "\(s) not in the fixture")
        return range.upperBound
    }

    func assertRefused(_ url: URL, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try loadGGUFModel(path: url.path, device: CPUDevice(threads: 1)), file: file, line: line) { error in
            XCTAssertTrue(error is BadInputError, "\(type(of: error)): \(error)", file: file, line: line)
            let s = "\(error)"
            XCTAssertFalse(s.contains("\n"), "one line: \(s)", file: file, line: line)
            for p in [url.path] + parts { XCTAssertTrue(s.contains(p), "'\(p)' not in: \(s)", file: file, line: line) }
        }
    }

    func testTruncatedFile() throws {
        let url = try patched("qwen2.f16.gguf") { $0 = $0.prefix($0.count / 2) }
        assertRefused(url, mentioning: [])
    }

    func testUnknownTensorType() throws {
        // Tensor info: name, n_dims u32, ne u64 x n_dims, type u32, offset u64.
        let url = try patched("llama3-rope.f16.gguf") { d in
            let at = try offset(after: "blk.0.attn_k.weight", in: d) + 4 + 2 * 8
            d.replaceSubrange(at..<(at + 4), with: [99, 0, 0, 0])
        }
        assertRefused(url, mentioning: ["99"])
    }

    func testUnknownArchitecture() throws {
        let url = try patched("llama3-rope.f16.gguf") { d in
            let at = try offset(after: "general.architecture", in: d) + 4 + 8  // value type u32, string length u64
            d.replaceSubrange(at..<(at + 5), with: Array("gpt2x".utf8))
        }
        assertRefused(url, mentioning: ["gpt2x", "llama, phi3, qwen2"])
    }

    func testMissingTensor() throws {
        let url = try patched("phi3.f16.gguf") { d in
            let at = try offset(after: "blk.0.ffn_up.weight", in: d) - "up.weight".utf8.count
            d.replaceSubrange(at..<(at + 2), with: Array("uq".utf8))
        }
        assertRefused(url, mentioning: ["blk.0.ffn_up.weight", "missing"])
    }

    func testShapeDisagreeingWithMetadata() throws {
        // attn_k [256, 128] -> [128, 256]: the same bytes, so the file is valid and only the shape is wrong.
        let url = try patched("qwen2.f16.gguf") { d in
            let at = try offset(after: "blk.0.attn_k.weight", in: d) + 4
            let ne0 = d.subdata(in: at..<(at + 8)), ne1 = d.subdata(in: (at + 8)..<(at + 16))
            d.replaceSubrange(at..<(at + 16), with: ne1 + ne0)
        }
        assertRefused(url, mentioning: ["blk.0.attn_k.weight", "[128, 256]", "expected [256, 128]"])
    }
}
