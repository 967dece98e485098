import DraftFormats
import Foundation
import XCTest

/// Dequantization of every ggml type and quantization to F16/BF16/Q8_0 against `gguf.quants`, on random blocks.
final class QuantizationTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-quants-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Byte offsets of a block's binary16 scale fields: random bytes there could be NaN or huge, so they get sane values.
    static func halfFields(_ type: GGMLType) -> [Int] {
        switch type {
        case .q8_0, .q4_0, .q5_0: return [0]
        case .q4_1, .q5_1, .q4_K, .q5_K: return [0, 2]
        case .q6_K: return [208]
        case .f16: return [0]
        case .f32, .bf16: return []
        }
    }

    /// `blocks` random blocks of `type`: random bytes, scales finite and moderate.
    static func randomBlocks(_ type: GGMLType, _ blocks: Int, _ rng: inout SplitMix) -> [UInt8] {
        var bytes = (0..<(blocks * type.blockBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for b in 0..<blocks {
            let base = b * type.blockBytes
            func sane() -> Float {
                let magnitude = Float(rng.next() % 10_000 + 1) / 4096  // up to about 2.4
                return rng.next() % 2 == 0 ? magnitude : -magnitude
            }
            switch type {
            case .f32:
                withUnsafeBytes(of: sane()) { for k in 0..<4 { bytes[base + k] = $0[k] } }
            case .bf16:
                let h = floatToBF16(sane())
                bytes[base] = UInt8(h & 0xFF); bytes[base + 1] = UInt8(h >> 8)
            default:
                for offset in halfFields(type) {
                    let h = floatToHalf(sane() / (type == .f16 ? 1 : 16))
                    bytes[base + offset] = UInt8(h & 0xFF); bytes[base + offset + 1] = UInt8(h >> 8)
                }
            }
        }
        return bytes
    }

    func testDequantizeMatchesGGUFQuantsForEveryType() throws {
        var rng = SplitMix(seed: 11)
        var manifest = [[String: Any]]()
        var inputs = [GGMLType: [UInt8]]()
        let blocks = 64
        for type in GGMLType.allCases {
            let bytes = Self.randomBlocks(type, type.isQuantized ? blocks : 256 * blocks / 8, &rng)
            inputs[type] = bytes
            try Data(bytes).write(to: dir.appendingPathComponent("\(type.name).blocks"))
            manifest.append(["op": "dequantize", "type": Int(type.rawValue), "input": "\(type.name).blocks",
                             "output": "\(type.name).floats"])
        }
        try JSONSerialization.data(withJSONObject: manifest).write(to: dir.appendingPathComponent("manifest.json"))
        let report = try PythonReference.json("gguf_quants.py", [dir.path])
        XCTAssertEqual((report["done"] as? [String])?.count, GGMLType.allCases.count)

        for type in GGMLType.allCases {
            let bytes = try XCTUnwrap(inputs[type])
            let count = bytes.count / type.blockBytes * type.blockElements
            let ours = try XCTUnwrap(bytes.withUnsafeBytes { dequantize(type, $0, count: count) })
            let ref = try Data(contentsOf: dir.appendingPathComponent("\(type.name).floats"))
            XCTAssertEqual(ref.count, 4 * count, type.name)
            let theirs = ref.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            var mismatches = 0
            for i in 0..<min(ours.count, theirs.count) where ours[i].bitPattern != theirs[i].bitPattern {
                if mismatches < 3 { XCTFail("\(type.name)[\(i)]: ours \(ours[i]), gguf \(theirs[i])") }
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "\(type.name): \(mismatches) of \(count) values differ")
            XCTAssertTrue(ours.allSatisfy(\.isFinite), type.name)
        }
    }

    func testQuantizeMatchesGGUFQuantsBitForBit() throws {
        var rng = SplitMix(seed: 5)
        let count = 32 * 128
        var values = (0..<count).map { _ in Float(Int64(bitPattern: rng.next() % 2_000_001) - 1_000_000) / 250_000 }
        for j in 0..<32 { values[j] = 0 }                       // an all-zero block: d = 0
        for j in 32..<64 { values[j] = Float(j - 48) * 0.5 }    // exact halves after scaling: ties round away
        values[64] = 70_000                                     // beyond binary16: infinity
        values[65] = 1e-8                                       // binary16 subnormal / zero
        values[66] = 3.0000002                                  // a bfloat16 rounding case
        var manifest = [[String: Any]]()
        try values.withUnsafeBytes { try Data($0).write(to: dir.appendingPathComponent("values.f32")) }
        for type in Quantizer.supported {
            manifest.append(["op": "quantize", "type": Int(type.rawValue), "input": "values.f32",
                             "output": "\(type.name).q"])
        }
        try JSONSerialization.data(withJSONObject: manifest).write(to: dir.appendingPathComponent("manifest.json"))
        let report = try PythonReference.json("gguf_quants.py", [dir.path])
        XCTAssertEqual((report["done"] as? [String])?.count, Quantizer.supported.count, "\(report)")
        for type in Quantizer.supported {
            let ours = try Quantizer.quantize(type, values)
            let theirs = [UInt8](try Data(contentsOf: dir.appendingPathComponent("\(type.name).q")))
            XCTAssertEqual(ours.count, theirs.count, type.name)
            let differing = zip(ours, theirs).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertEqual(differing.count, 0, "\(type.name) differs at bytes \(differing.prefix(8))")
        }
    }

    /// Quantize then dequantize stays within each type's rounding error, and NaNs never trap.
    func testRoundTripErrorBounds() throws {
        var rng = SplitMix(seed: 3)
        var values = (0..<(32 * 64)).map { _ in Float(Int64(bitPattern: rng.next() % 20_001) - 10_000) / 5000 }
        for type in Quantizer.supported {
            let q = try Quantizer.quantize(type, values)
            let back = try XCTUnwrap(q.withUnsafeBytes { dequantize(type, $0, count: values.count) })
            for b in 0..<(values.count / 32) {
                let block = values[(32 * b)..<(32 * b + 32)]
                let amax = block.map(abs).max() ?? 0
                for j in block.indices {
                    let bound: Float
                    switch type {
                    case .f32: bound = 0
                    case .f16: bound = abs(values[j]) * 0x1p-11 + 0x1p-25
                    case .bf16: bound = abs(values[j]) * 0x1p-8
                    default: bound = amax / 127 * 0.5 + amax * 0x1p-10  // half a step, plus d's binary16 rounding
                    }
                    XCTAssertLessThanOrEqual(abs(back[j] - values[j]), bound, "\(type.name)[\(j)]")
                }
            }
        }
        values[3] = .nan
        XCTAssertNoThrow(try Quantizer.quantize(.q8_0, values))
        XCTAssertEqual(floatToBF16(.nan) & 0x7FC0, 0x7FC0)  // quiet NaN
        XCTAssertThrowsError(try Quantizer.quantize(.q4_K, values)) { XCTAssertTrue("\($0)".contains("supported: F32")) }
        XCTAssertThrowsError(try Quantizer.quantize(.q8_0, Array(values.prefix(33)))) {
            XCTAssertTrue("\($0)".contains("whole number of blocks"))
        }
        XCTAssertNil([UInt8](repeating: 0, count: 10).withUnsafeBytes { dequantize(.q8_0, $0, count: 32) })
    }
}
