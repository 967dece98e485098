import DraftFormats
import Foundation
import XCTest

/// The GGUF writer round-trips through our reader (every value type, bit-exact tensor bytes) and through the `gguf`
/// package's GGUFReader (metadata, tensor infos, bytes, and gguf.quants' dequantized values) for every tensor type.
final class GGUFWriterTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-ggufw-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static let metadata: [(String, GGUFValue)] = [
        ("general.architecture", .string("llama")),
        ("general.name", .string("draft – ünïcode")),
        ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
        ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)),
        ("u64", .uint64(UInt64.max - 1)), ("i64", .int64(Int64.min + 1)),
        ("f32", .float32(-0.1)), ("f64", .float64(1e300)), ("t", .bool(true)), ("f", .bool(false)),
        ("empty", .string("")),
        ("a.u8", .array(.uint8([0, 255]))), ("a.i8", .array(.int8([-128, 127]))),
        ("a.u16", .array(.uint16([1, 65535]))), ("a.i16", .array(.int16([-1, 2]))),
        ("a.u32", .array(.uint32([3, 4]))), ("a.i32", .array(.int32([-5, 6]))),
        ("a.u64", .array(.uint64([7, UInt64.max]))), ("a.i64", .array(.int64([-9, 10]))),
        ("a.f32", .array(.float32([0.5, -1e-3]))), ("a.f64", .array(.float64([0.25, -1e-300]))),
        ("a.bool", .array(.bool([true, false, true]))), ("a.string", .array(.string(["x", "", "yz"]))),
        ("a.empty", .array(.int32([]))),
        ("a.nested", .array(.array([.int32([1, 2]), .string(["p"])]))),
    ]

    /// A writer holding every metadata type and a tensor of every ggml type: F32/F16/BF16/Q8_0 quantized from floats
    /// and the other types from random valid blocks.
    func sampleWriter(alignment: UInt32? = nil) throws -> GGUFWriter {
        var w = GGUFWriter()
        if let alignment { try w.add("general.alignment", .uint32(alignment)) }
        for (k, v) in Self.metadata { try w.add(k, v) }
        var rng = SplitMix(seed: 21)
        for type in GGMLType.allCases {
            let columns = type.blockElements == 1 ? 6 : 2 * type.blockElements
            if Quantizer.supported.contains(type) {
                let values = (0..<(3 * columns)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 300 }
                try w.addTensor(name: "t.\(type.name)", shape: [3, columns], values: values, type: type)
            } else {
                let bytes = QuantizationTests.randomBlocks(type, 3 * columns / type.blockElements, &rng)
                try w.addTensor(name: "t.\(type.name)", dimensions: [columns, 3], type: type, bytes: bytes)
            }
        }
        try w.addTensor(name: "scalarish", shape: [5], values: [1, 2, 3, 4, 5], type: .f32)
        return w
    }

    func testRoundTripThroughOurReader() throws {
        for alignment in [nil, 64] as [UInt32?] {
            let w = try sampleWriter(alignment: alignment)
            let url = dir.appendingPathComponent("w.gguf")
            try w.write(to: url)
            let g = try GGUFFile(path: url.path)
            XCTAssertEqual(g.version, 3)
            XCTAssertEqual(g.alignment, Int(alignment ?? 32))
            XCTAssertEqual(g.metadataKeys, w.metadataKeys)
            for key in w.metadataKeys { XCTAssertEqual(g.metadata[key], w.metadata[key], key) }
            XCTAssertEqual(g.tensors, w.tensors)
            let serialized = w.serialized()
            XCTAssertEqual(g.bytes.count, serialized.count)
            for t in g.tensors {
                XCTAssertEqual(t.offset % g.alignment, 0, t.name)
                XCTAssertEqual(Array(g.data(t)), Array(serialized[(g.dataOffset + t.offset)..<(g.dataOffset + t.offset + t.byteCount)]))
            }
            XCTAssertEqual(g.tensor(named: "t.Q8_0")?.rowMajorShape, [3, 64])
            // Floats come back as the quantizer made them.
            let f32 = try XCTUnwrap(g.tensor(named: "t.F32"))
            let values = try XCTUnwrap(dequantize(.f32, g.data(f32), count: f32.elementCount))
            XCTAssertEqual(try Quantizer.quantize(.f32, values), Array(g.data(f32)))
            // A second file from the same writer is byte-identical: nothing depends on time or addresses.
            try w.write(to: url)
            XCTAssertEqual([UInt8](try Data(contentsOf: url)), serialized)
            XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir.path).contains { $0.contains(".tmp-") })
        }
    }

    func testRoundTripThroughGGUFReaderForEveryTensorType() throws {
        let w = try sampleWriter()
        let url = dir.appendingPathComponent("py.gguf")
        try w.write(to: url)
        let ref = try PythonReference.json("gguf_dump.py", [url.path, "--values"])
        let g = try GGUFFile(path: url.path)
        XCTAssertEqual(ref["version"] as? Int, 3)
        XCTAssertEqual(ref["alignment"] as? Int, 32)
        XCTAssertEqual(ref["data_offset"] as? Int, g.dataOffset)
        let metadata = try XCTUnwrap(ref["metadata"] as? [[String: Any]])
        XCTAssertEqual(metadata.map { $0["key"] as? String ?? "" }, w.metadataKeys)
        for entry in metadata {
            let key = entry["key"] as? String ?? ""
            let value = try XCTUnwrap(w.metadata[key])
            XCTAssertEqual(entry["type"] as? Int, Int(value.type.rawValue), key)
            ReferenceJSON.assertMatches(value, entry, key: key)
        }
        let tensors = try XCTUnwrap(ref["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.map { $0["name"] as? String ?? "" }, w.tensors.map(\.name))
        var typesSeen = Set<Int>()
        for (t, info) in zip(tensors, w.tensors) {
            XCTAssertEqual(t["dims"] as? [Int], info.dimensions, info.name)
            XCTAssertEqual(t["type"] as? Int, Int(info.type.rawValue), info.name)
            XCTAssertEqual(t["offset"] as? Int, info.offset, info.name)
            XCTAssertEqual(t["n_bytes"] as? Int, info.byteCount, info.name)
            XCTAssertEqual((t["checksum"] as? NSNumber)?.uint64Value, PythonReference.checksum(g.data(info)), info.name)
            let ours = try XCTUnwrap(dequantize(info.type, g.data(info), count: info.elementCount))
            XCTAssertEqual((t["values"] as? [NSNumber])?.map(\.uint32Value), ours.map(\.bitPattern), info.name)
            typesSeen.insert(Int(info.type.rawValue))
        }
        XCTAssertEqual(typesSeen, Set(GGMLType.allCases.map { Int($0.rawValue) }))
    }

    func testWriterRefusesBadInput() throws {
        var w = GGUFWriter()
        try w.add("k", .uint32(1))
        XCTAssertThrowsError(try w.add("k", .uint32(2))) { XCTAssertTrue("\($0)".contains("'k' added twice")) }
        XCTAssertThrowsError(try w.add("general.alignment", .uint32(24))) { XCTAssertTrue("\($0)".contains("power of two")) }
        XCTAssertThrowsError(try w.addTensor(name: "q", shape: [2, 16], values: [Float](repeating: 0, count: 32), type: .q8_0)) {
            XCTAssertTrue("\($0)".contains("'q' rows of 16"))
        }
        XCTAssertThrowsError(try w.addTensor(name: "q", shape: [2, 32], values: [Float](repeating: 0, count: 64), type: .q4_K)) {
            XCTAssertTrue("\($0)".contains("'q'"))
        }
        XCTAssertThrowsError(try w.addTensor(name: "b", dimensions: [32], type: .q4_0, bytes: [UInt8](repeating: 0, count: 17))) {
            XCTAssertTrue("\($0)".contains("17 bytes (expected 18"))
        }
        XCTAssertThrowsError(try w.addTensor(name: "s", shape: [3], values: [1, 2], type: .f32)) {
            XCTAssertTrue("\($0)".contains("2 values for shape [3]"))
        }
        try w.addTensor(name: "s", shape: [2], values: [1, 2], type: .f16)
        XCTAssertThrowsError(try w.addTensor(name: "s", shape: [2], values: [1, 2], type: .f16)) {
            XCTAssertTrue("\($0)".contains("'s' added twice"))
        }
        XCTAssertThrowsError(try w.add("general.alignment", .uint32(64))) { XCTAssertTrue("\($0)".contains("before adding tensors")) }
        XCTAssertThrowsError(try w.write(to: dir.appendingPathComponent("no/such/dir/x.gguf"))) {
            XCTAssertTrue("\($0)".contains("cannot write"))
        }
    }
}
