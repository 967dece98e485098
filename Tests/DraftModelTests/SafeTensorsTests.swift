import DraftFormats
import DraftModel
import Foundation
import XCTest

/// safetensors written by `SafeTensorsFile.write` read back exactly, with an 8-byte-aligned data section.
final class SafeTensorsTests: XCTestCase {
    func testWriteThenRead() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let a: [Float] = [1, -2.5, .pi, 0], b: [Float] = (0..<6).map { Float($0) / 3 }
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try SafeTensorsFile.write([("a", [2, 2], pa), ("b.weight", [6], pb)], metadata: ["format": "pt"], to: url)
            }
        }
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.floats("a"), a)
        XCTAssertEqual(file.floats("b.weight"), b)
        XCTAssertEqual(file.entries["a"]?.shape, [2, 2])
        XCTAssertEqual(file.metadata["format"], "pt")
        let header = try Data(contentsOf: url).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(header)) % 8, 0)
    }
}
