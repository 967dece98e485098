import DraftFormats
import Foundation
import XCTest

final class TensorBoardEventFileTests: XCTestCase {
    func testCRC32CKnownVector() {
        // The check value of CRC-32C (RFC 3720, appendix B.4).
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    }

    /// TensorBoard's own reader (EventAccumulator) sees every scalar at its step, across two files in one directory
    /// (a run and its resume).
    func testTensorBoardReadsTheScalars() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            let file = try TensorBoardEventFile(directory: dir)
            for step in 1...5 {
                file.scalars([("train/loss", 10.0 / Double(step)), ("train/lr", 1e-3 * Double(step))], step: step)
            }
        }
        do {
            let resumed = try TensorBoardEventFile(directory: dir)
            resumed.scalars([("train/loss", 1.5), ("val_loss/code", 2.25)], step: 6)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(files.count, 2)

        let output = try runReferencePython(["scripts/reference/tensorboard_scalars.py", dir.path])
        let scalars = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [[Double]]])
        XCTAssertEqual(Set(scalars.keys), ["train/loss", "train/lr", "val_loss/code"])
        let loss = try XCTUnwrap(scalars["train/loss"])
        XCTAssertEqual(loss.map { Int($0[0]) }, [1, 2, 3, 4, 5, 6])
        for (i, point) in loss.prefix(5).enumerated() {
            XCTAssertEqual(point[1], Double(Float(10.0 / Double(i + 1))), accuracy: 1e-6)
        }
        XCTAssertEqual(loss[5][1], 1.5)
        XCTAssertEqual(scalars["val_loss/code"]?.first?[1], 2.25)
    }
}

/// Runs a committed reference script with the tests' Python environment (`scripts/python-env.sh`, or
/// `$SWIFTDRAFT_PYTHON`); a failure is a test failure, never a skip.
func runReferencePython(_ arguments: [String]) throws -> String {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func run(_ executable: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.currentDirectoryURL = repo
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
    var python = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"] ?? ""
    if python.isEmpty {
        let env = try run("/bin/bash", [repo.appendingPathComponent("scripts/python-env.sh").path])
        guard env.status == 0 else { XCTFail("scripts/python-env.sh failed: \(env.err)"); return "" }
        python = env.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    let result = try run(python, arguments)
    if result.status != 0 {
        XCTFail("\(python) \(arguments.joined(separator: " ")) failed: \(result.err)")
    }
    return result.out
}
