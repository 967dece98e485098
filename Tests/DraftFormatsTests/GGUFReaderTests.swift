import DraftFormats
import Foundation
import XCTest

/// The GGUF reader: a hand-built file reads back field by field; every structural defect is a one-line FormatError
/// naming the file and where; truncation and corruption never trap; a real llama.cpp file reads as `gguf` reads it.
final class GGUFReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-gguf-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ data: Data) throws -> String {
        let u = dir.appendingPathComponent(name)
        try data.write(to: u)
        return u.path
    }

    func assertRejected(_ data: Data, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write("bad.gguf", data)
        do {
            _ = try GGUFFile(path: path)
            XCTFail("accepted a file that should fail with \(expected)", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertTrue(e.message.hasPrefix(path + ":"), "does not name the file: \(e.message)", file: file, line: line)
            for s in expected {
                XCTAssertTrue(e.message.contains(s), "'\(e.message)' lacks '\(s)'", file: file, line: line)
            }
            XCTAssertFalse(e.message.contains("\n"), "more than one line: \(e.message)", file: file, line: line)
        }
    }

    func testSampleReadsBack() throws {
        let sample = HandBuiltGGUF.sample()
        let g = try GGUFFile(path: try write("s.gguf", sample.data))
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.alignment, 32)
        XCTAssertEqual(g.metadataKeys, ["general.architecture", "llama.block_count", "llama.rope.freq_base",
                                        "tokenizer.ggml.add_bos_token", "tokenizer.ggml.tokens",
                                        "tokenizer.ggml.scores", "signed"])
        XCTAssertEqual(g.metadata["general.architecture"], .string("llama"))
        XCTAssertEqual(g.metadata["llama.block_count"], .uint32(2))
        XCTAssertEqual(g.metadata["llama.block_count"]?.integer, 2)
        XCTAssertEqual(g.metadata["llama.rope.freq_base"]?.float, 10000)
        XCTAssertEqual(g.metadata["tokenizer.ggml.add_bos_token"]?.bool, true)
        XCTAssertEqual(g.metadata["tokenizer.ggml.tokens"]?.strings, ["a", "bc"])
        XCTAssertEqual(g.metadata["tokenizer.ggml.scores"], .array(.float32([-1, -2.5])))
        XCTAssertEqual(g.metadata["tokenizer.ggml.scores"]?.floats, [-1, -2.5])
        XCTAssertEqual(g.metadata["signed"]?.integer, -5)
        XCTAssertEqual(g.dataOffset % 32, 0)
        XCTAssertEqual(g.dataOffset + sample.tensorData.count, g.bytes.count)

        XCTAssertEqual(g.tensors.map(\.name), ["norm.weight", "half", "blk.0.attn_q.weight"])
        let norm = try XCTUnwrap(g.tensor(named: "norm.weight"))
        XCTAssertEqual(norm.dimensions, [3, 2])
        XCTAssertEqual(norm.rowMajorShape, [2, 3])
        XCTAssertEqual(norm.rows, 2)
        XCTAssertEqual(norm.columns, 3)
        XCTAssertEqual(norm.type, .f32)
        XCTAssertEqual(norm.offset, 0)
        XCTAssertEqual(norm.byteCount, 24)
        XCTAssertEqual(norm.elementCount, 6)
        XCTAssertEqual(Array(g.data(norm).bindMemory(to: Float.self)), [0, 0.5, 1, 1.5, 2, 2.5])
        let half = try XCTUnwrap(g.tensor(named: "half"))
        XCTAssertEqual(half.offset, 32)
        XCTAssertEqual(half.byteCount, 8)
        let q = try XCTUnwrap(g.tensor(named: "blk.0.attn_q.weight"))
        XCTAssertEqual(q.type, .q8_0)
        XCTAssertEqual(q.offset, 64)
        XCTAssertEqual(q.byteCount, 68)
        XCTAssertEqual(q.rowBytes, 34)
        XCTAssertEqual(Data(g.data(q)), sample.tensorData.suffix(68))
        XCTAssertNil(g.tensor(named: "missing"))

        // The metadata-only entry point agrees and needs no tensor section.
        let meta = try GGUFMetadata(path: try write("m.gguf", sample.data.prefix(24 + sample.kv.count)))
        XCTAssertEqual(meta.keys, g.metadataKeys)
        XCTAssertEqual(meta.tensorCount, 3)
    }

    func testAlignmentKeyMovesTheDataSection() throws {
        var g = HandBuiltGGUF()
        g.alignment = 64
        g.add("general.alignment", type: 4, HandBuiltGGUF.u32(64))
        g.addTensor("a", dims: [3], type: 0, bytes: Data(count: 12))
        g.addTensor("b", dims: [2], type: 0, bytes: Data(count: 8))
        let f = try GGUFFile(path: try write("a.gguf", g.data))
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataOffset % 64, 0)
        XCTAssertEqual(f.tensors.map(\.offset), [0, 64])
    }

    func testStructuralDefectsAreNamed() throws {
        var g = HandBuiltGGUF.sample()
        g.magic = Array("GGUX".utf8)
        try assertRejected(g.data, ["not a GGUF file", "expected the magic 'GGUF'"])

        g = HandBuiltGGUF.sample()
        g.version = 1
        try assertRejected(g.data, ["GGUF version 1 (expected 2 or 3)"])
        g.version = 2
        XCTAssertEqual(try GGUFFile(path: try write("v2.gguf", g.data)).version, 2)

        g = HandBuiltGGUF()
        g.addTensor("blk.3.ffn_up.weight", dims: [32], type: 99, bytes: Data(count: 64))
        try assertRejected(g.data, ["'blk.3.ffn_up.weight'", "type id 99", "supported:", "Q4_K (12)"])

        g = HandBuiltGGUF()
        g.addTensor("w", dims: [16, 2], type: 8, bytes: Data(count: 68))
        try assertRejected(g.data, ["'w'", "rows of 16 elements", "Q8_0 blocks of 32"])

        g = HandBuiltGGUF()
        g.addTensor("w", dims: [4], type: 0, bytes: Data(count: 20), offset: 4)
        try assertRejected(g.data, ["'w'", "offset 4", "alignment 32"])

        g = HandBuiltGGUF()
        g.addTensor("w", dims: [4], type: 0, bytes: Data(count: 16), offset: 1 << 40)
        try assertRejected(g.data, ["'w'", "beyond the end of the file"])

        g = HandBuiltGGUF()
        g.addTensor("w", dims: [64], type: 0, bytes: Data(count: 100))  // needs 256 bytes
        try assertRejected(g.data, ["truncated GGUF", "'w'", "..<"])

        g = HandBuiltGGUF()
        g.addTensor("a", dims: [16], type: 0, bytes: Data(count: 64))
        g.addTensor("b", dims: [16], type: 0, bytes: Data(count: 64), offset: 32)
        try assertRejected(g.data, ["'b'", "overlaps tensor 'a'"])

        g = HandBuiltGGUF()
        g.addTensor("a", dims: [8], type: 0, bytes: Data(count: 32))
        g.addTensor("a", dims: [8], type: 0, bytes: Data(count: 32))
        try assertRejected(g.data, ["duplicate tensor name 'a'"])

        g = HandBuiltGGUF()
        g.addTensor("five", dims: [1, 1, 1, 1, 1], type: 0, bytes: Data(count: 4))
        try assertRejected(g.data, ["'five'", "5 dimensions", "at most 4"])

        g = HandBuiltGGUF()
        g.addTensor("huge", dims: [1 << 62, 4], type: 0, bytes: Data(count: 4))
        try assertRejected(g.data, ["'huge'", "implausible dimensions"])

        g = HandBuiltGGUF()
        g.add("general.alignment", type: 4, HandBuiltGGUF.u32(48))
        try assertRejected(g.data, ["general.alignment", "power of two"])

        g = HandBuiltGGUF()
        g.add("k", type: 13, Data(count: 8))
        try assertRejected(g.data, ["unknown GGUF value type 13", "'k'"])
        g = HandBuiltGGUF()
        g.add("k", type: 4, HandBuiltGGUF.u32(1))
        g.add("k", type: 4, HandBuiltGGUF.u32(2))
        try assertRejected(g.data, ["duplicate metadata key 'k'"])
    }

    /// Counts and lengths far beyond the file are refused before anything is allocated for them.
    func testImplausibleCountsAreRefusedWithoutAllocating() throws {
        var d = Data("GGUF".utf8) + HandBuiltGGUF.u32(3) + HandBuiltGGUF.u64(0) + HandBuiltGGUF.u64(UInt64.max)
        try assertRejected(d, ["truncated GGUF at byte 24", "metadata pairs"])
        d = Data("GGUF".utf8) + HandBuiltGGUF.u32(3) + HandBuiltGGUF.u64(UInt64.max) + HandBuiltGGUF.u64(0)
        try assertRejected(d, ["truncated GGUF at byte 24", "tensor infos"])
        var g = HandBuiltGGUF()
        g.add("k", type: 9, HandBuiltGGUF.u32(8) + HandBuiltGGUF.u64(UInt64.max))
        try assertRejected(g.data, ["truncated GGUF", "elements of 'k'"])
        g = HandBuiltGGUF()
        g.add("k", type: 8, HandBuiltGGUF.u64(UInt64.max - 3))
        try assertRejected(g.data, ["truncated GGUF", "the value of 'k'"])
        g = HandBuiltGGUF()
        g.add("k", type: 9, HandBuiltGGUF.u32(12) + HandBuiltGGUF.u64(1 << 40))
        try assertRejected(g.data, ["truncated GGUF", "'k'"])
    }

    /// Every proper prefix of a file is refused with a FormatError; random byte flips load or fail cleanly, and
    /// whatever loads has every tensor inside the file (a trap here would kill the test process).
    func testPrefixesAndByteFlipsNeverTrap() throws {
        let full = HandBuiltGGUF.sample().data
        for n in 0..<full.count {
            let path = try write("cut.gguf", full.prefix(n))
            XCTAssertThrowsError(try GGUFFile(path: path), "prefix of \(n) bytes") { error in
                guard let e = error as? FormatError else { return XCTFail("not a FormatError: \(error)") }
                XCTAssertTrue(e.message.hasPrefix(path), e.message)
            }
        }
        var rng = SplitMix(seed: 7)
        var loaded = 0
        for k in 0..<2000 {
            var g = full
            for _ in 0..<(1 + k % 4) { g[Int(rng.next() % UInt64(g.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            let path = try write("flip.gguf", g)
            do {
                let f = try GGUFFile(path: path)
                for t in f.tensors {
                    let view = f.data(t)
                    XCTAssertEqual(view.count, t.byteCount)
                    XCTAssertLessThanOrEqual(f.dataOffset + t.offset + t.byteCount, f.bytes.count)
                }
                loaded += 1
            } catch let e as FormatError {
                XCTAssertTrue(e.message.hasPrefix(path), e.message)
            }
        }
        XCTAssertGreaterThan(loaded, 0, "no mutation left a loadable file: flips only in tensor data must load")
    }

    /// A real llama.cpp-written file (SmolLM2-135M Q4_1) reads exactly as the `gguf` package reads it.
    func testRealFileMatchesGGUFReader() throws {
        let url = PythonReference.cache.appendingPathComponent("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("\(url.path) missing: run scripts/fetch-assets.sh first")
        }
        let start = Date()
        let g = try GGUFFile(path: url.path)
        print("opened \(url.lastPathComponent) (\(g.bytes.count) bytes, \(g.tensors.count) tensors) in "
              + String(format: "%.3f s", Date().timeIntervalSince(start)))
        let ref = try PythonReference.json("gguf_dump.py", [url.path, "--max-array", "4"])
        XCTAssertEqual(ref["version"] as? Int, Int(g.version))
        XCTAssertEqual(ref["alignment"] as? Int, g.alignment)
        XCTAssertEqual(ref["data_offset"] as? Int, g.dataOffset)
        let metadata = try XCTUnwrap(ref["metadata"] as? [[String: Any]])
        XCTAssertEqual(metadata.map { $0["key"] as? String ?? "" }, g.metadataKeys)
        for entry in metadata {
            let key = entry["key"] as? String ?? ""
            let value = try XCTUnwrap(g.metadata[key])
            XCTAssertEqual(entry["type"] as? Int, Int(value.type.rawValue), key)
            ReferenceJSON.assertMatches(value, entry, key: key)
        }
        let tensors = try XCTUnwrap(ref["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.count, g.tensors.count)
        for (t, info) in zip(tensors, g.tensors) {
            XCTAssertEqual(t["name"] as? String, info.name)
            XCTAssertEqual(t["dims"] as? [Int], info.dimensions, info.name)
            XCTAssertEqual(t["type"] as? Int, Int(info.type.rawValue), info.name)
            XCTAssertEqual(t["offset"] as? Int, info.offset, info.name)
            XCTAssertEqual(t["n_bytes"] as? Int, info.byteCount, info.name)
            if info.byteCount < 1 << 20 {
                XCTAssertEqual((t["checksum"] as? NSNumber)?.uint64Value, PythonReference.checksum(g.data(info)), info.name)
            }
        }
        XCTAssertEqual(g.tensor(named: "token_embd.weight")?.rowMajorShape, [49152, 576])
    }
}

/// A small deterministic generator, so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
