import DraftFormats
import Foundation
import XCTest

/// safetensors: F32/F16/BF16 round trips, files of Hugging Face's `safetensors` package both ways, sharded model
/// directories, and malformed headers as FormatErrors naming the file.
final class SafeTensorsFormatTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-st-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ url: URL, _ tensors: [(String, [Int], [Float])], dtype: SafeTensorsDType, metadata: [String: String] = [:]) throws {
        // The writer takes buffer pointers; copies give them a lifetime spanning the call.
        let list = tensors.map { t -> (name: String, shape: [Int], values: UnsafeBufferPointer<Float>) in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: t.2.count)
            _ = p.initialize(from: t.2)
            return (t.0, t.1, UnsafeBufferPointer(p))
        }
        defer { for t in list { t.values.deallocate() } }
        try SafeTensorsFile.write(list, metadata: metadata, dtype: dtype, to: url)
    }

    func testHalfAndBFloatRoundTrips() throws {
        let values: [Float] = [0, 1, -2.5, 0.1, 65504, 1e-3, -3.0000002, 1e5]
        for dtype in [SafeTensorsDType.f32, .f16, .bf16] {
            let url = dir.appendingPathComponent("\(dtype.rawValue).safetensors")
            try write(url, [("w", [2, 4], values)], dtype: dtype, metadata: ["format": "pt"])
            let file = try SafeTensorsFile(contentsOf: url)
            XCTAssertEqual(file.entries["w"]?.dtype, dtype.rawValue)
            XCTAssertEqual(file.entries["w"]?.shape, [2, 4])
            XCTAssertEqual(file.entries["w"]?.range.count, 8 * dtype.byteSize)
            XCTAssertEqual(file.metadata["format"], "pt")
            let back = try file.tensor("w")
            let expected: [Float]
            switch dtype {
            case .f16: expected = values.map { halfToFloat(floatToHalf($0)) }
            case .bf16: expected = values.map { bf16ToFloat(floatToBF16($0)) }
            default: expected = values
            }
            XCTAssertEqual(back.map(\.bitPattern), expected.map(\.bitPattern), dtype.rawValue)
            if dtype == .bf16 {
                // 1.0 is 0x3F80 in bfloat16; the stored bytes are that, little-endian, after the 1.0 at index 1.
                XCTAssertEqual(Array(file.bytes("w")![2..<4]), [0x80, 0x3F])
                XCTAssertEqual(back[7], 99840)  // 1e5 rounds to the nearest bfloat16
            }
            if dtype == .f16 { XCTAssertEqual(back[4], 65504) }
        }
    }

    func testReadsAFileWrittenBySafetensors() throws {
        let url = dir.appendingPathComponent("py.safetensors")
        let ref = try PythonReference.json("safetensors_check.py", ["write", url.path])
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.metadata, ref["metadata"] as? [String: String])
        let tensors = try XCTUnwrap(ref["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(Set(file.entries.keys), Set(tensors.keys))
        for (name, t) in tensors {
            let entry = try XCTUnwrap(file.entries[name])
            XCTAssertEqual(entry.dtype, t["dtype"] as? String, name)
            XCTAssertEqual(entry.shape, t["shape"] as? [Int], name)
            let values = try XCTUnwrap(t["values"] as? [NSNumber])
            if entry.dtype == "I32" {
                XCTAssertEqual(file.int32s(name), values.map(\.int32Value), name)
            } else {
                XCTAssertEqual(try file.tensor(name).map(\.bitPattern), values.map(\.uint32Value), name)
            }
        }
    }

    func testSafetensorsReadsOurFiles() throws {
        let values: [Float] = (0..<12).map { Float($0) * 0.37 - 2 }
        for dtype in [SafeTensorsDType.f32, .f16] {
            let url = dir.appendingPathComponent("ours-\(dtype.rawValue).safetensors")
            try write(url, [("a", [3, 4], values), ("b", [2], [7, -8])], dtype: dtype, metadata: ["format": "pt"])
            let ref = try PythonReference.json("safetensors_check.py", ["read", url.path])
            XCTAssertEqual(ref["metadata"] as? [String: String], ["format": "pt"])
            let tensors = try XCTUnwrap(ref["tensors"] as? [String: [String: Any]])
            let ours = try SafeTensorsFile(contentsOf: url)
            for name in ["a", "b"] {
                let t = try XCTUnwrap(tensors[name], name)
                XCTAssertEqual(t["dtype"] as? String, dtype.rawValue)
                XCTAssertEqual(t["shape"] as? [Int], ours.entries[name]?.shape)
                XCTAssertEqual((t["values"] as? [NSNumber])?.map(\.uint32Value), try ours.tensor(name).map(\.bitPattern))
            }
        }
    }

    func testShardedDirectoryReadsAcrossShards() throws {
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6], c: [Float] = [-1, -2, -3]
        try write(dir.appendingPathComponent("model-00001-of-00002.safetensors"), [("a", [2, 2], a), ("b", [2], b)], dtype: .f32)
        try write(dir.appendingPathComponent("model-00002-of-00002.safetensors"), [("c", [3], c)], dtype: .bf16)
        try SafeTensorsModel.writeIndex(weightMap: ["a": "model-00001-of-00002.safetensors",
                                                    "b": "model-00001-of-00002.safetensors",
                                                    "c": "model-00002-of-00002.safetensors"],
                                        totalSize: 4 * 6 + 2 * 3, in: dir)
        let model = try SafeTensorsModel(at: dir)
        XCTAssertEqual(model.shards.count, 2)
        XCTAssertEqual(model.names, ["a", "b", "c"])
        XCTAssertEqual(try model.tensor("a"), a)
        XCTAssertEqual(try model.tensor("b"), b)
        XCTAssertEqual(try model.tensor("c"), c)
        XCTAssertEqual(model.entry("c")?.entry.dtype, "BF16")
        XCTAssertThrowsError(try model.tensor("d")) { XCTAssertTrue("\($0)".contains("no tensor 'd'")) }
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(SafeTensorsModel.indexFileName))) as? [String: Any]
        XCTAssertEqual((index?["metadata"] as? [String: Int])?["total_size"], 30)

        // A single-file directory opens the same way.
        let single = dir.appendingPathComponent("single")
        try FileManager.default.createDirectory(at: single, withIntermediateDirectories: true)
        try write(single.appendingPathComponent("model.safetensors"), [("x", [1], [9])], dtype: .f16)
        XCTAssertEqual(try SafeTensorsModel(at: single).tensor("x"), [9])

        // The index naming a missing shard, or a tensor its shard lacks, is named.
        try SafeTensorsModel.writeIndex(weightMap: ["a": "gone.safetensors"], totalSize: 0, in: dir)
        assertFormatError(try SafeTensorsModel(at: dir), dir.appendingPathComponent(SafeTensorsModel.indexFileName).path,
                          "shard 'gone.safetensors'")
        try SafeTensorsModel.writeIndex(weightMap: ["z": "model-00002-of-00002.safetensors"], totalSize: 0, in: dir)
        assertFormatError(try SafeTensorsModel(at: dir), dir.appendingPathComponent(SafeTensorsModel.indexFileName).path,
                          "tensor 'z'")
    }

    func assertFormatError<T>(_ body: @autoclosure () throws -> T, _ path: String, _ expected: String,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? FormatError else { return XCTFail("not a FormatError: \(error)", file: file, line: line) }
            XCTAssertTrue(e.message.hasPrefix(path + ":"), e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(expected), "'\(e.message)' lacks '\(expected)'", file: file, line: line)
        }
    }

    func testMalformedHeadersAreNamed() throws {
        func file(_ header: String, data: Int = 0, length: UInt64? = nil) throws -> String {
            let url = dir.appendingPathComponent("bad.safetensors")
            var d = withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { Data($0) }
            d += Data(header.utf8) + Data(count: data)
            try d.write(to: url)
            return url.path
        }
        var p = try file("")
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "header length 0")
        p = try file("{}", length: 1 << 40)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "header length 1099511627776")
        p = try file("{\"a\": ")
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "malformed safetensors header")
        p = try file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#, data: 8)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "leave the data section")
        p = try file(#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}"#, data: 16)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "needs 3 x 4 bytes")
        p = try file(#"{"a": {"dtype": "Q9", "shape": [3], "data_offsets": [0, 3]}}"#, data: 16)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "unknown dtype 'Q9'")
        p = try file(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, data: 16)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)), p, "overlap")
        p = try file(#"{"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}"#, data: 8)
        assertFormatError(try SafeTensorsFile(contentsOf: URL(fileURLWithPath: p)).tensor("a"), p, "dtype I32")
        // Every prefix of a good file is refused cleanly, never a trap.
        let good = dir.appendingPathComponent("good.safetensors")
        try write(good, [("w", [4], [1, 2, 3, 4])], dtype: .f16)
        let bytes = try Data(contentsOf: good)
        for n in 0..<bytes.count {
            let cut = dir.appendingPathComponent("cut.safetensors")
            try bytes.prefix(n).write(to: cut)
            XCTAssertThrowsError(try SafeTensorsFile(contentsOf: cut), "prefix \(n)") { XCTAssertTrue($0 is FormatError) }
        }
    }
}
