import Foundation
import XCTest

/// Runs the committed Python reference checkers (`scripts/reference/`) under the tests' venv
/// (`scripts/python-env.sh`, or `$SWIFTDRAFT_PYTHON`). A missing venv is created, never a skip.
enum PythonReference {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let cache: URL = {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty {
            return URL(fileURLWithPath: (c as NSString).expandingTildeInPath)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }()

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// The venv's python, made once per test process.
    static let python: Result<String, Failure> = {
        if let p = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"], !p.isEmpty { return .success(p) }
        do {
            let out = try execute("/bin/bash", [repo.appendingPathComponent("scripts/python-env.sh").path])
            return .success(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            return .failure(Failure(description: "scripts/python-env.sh failed: \(error)"))
        }
    }()

    /// Runs `scripts/reference/<script>` with `arguments` and returns its stdout; a non-zero exit throws with stderr.
    static func run(_ script: String, _ arguments: [String]) throws -> Data {
        let python = try python.get()
        return try execute(python, [repo.appendingPathComponent("scripts/reference/\(script)").path] + arguments)
    }

    /// Runs a checker and parses its stdout as a JSON object.
    static func json(_ script: String, _ arguments: [String]) throws -> [String: Any] {
        let out = try run(script, arguments)
        guard let object = try JSONSerialization.jsonObject(with: out) as? [String: Any] else {
            throw Failure(description: "\(script) printed no JSON object")
        }
        return object
    }

    private static func execute(_ executable: String, _ arguments: [String]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        // stderr goes to a file, so a chatty child cannot block on a full pipe while stdout is being read.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-py-\(UUID()).err")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let stderrData = (try? Data(contentsOf: errURL)) ?? Data()
        guard p.terminationStatus == 0 else {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus): "
                + String(decoding: stderrData.suffix(2000), as: UTF8.self))
        }
        return stdoutData
    }

    /// The tensor checksum `gguf_dump.py` prints: sum of byte * (index % 65521 + 1), wrapping at 2^64.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var sum: UInt64 = 0
        for (i, b) in bytes.enumerated() { sum &+= UInt64(b) &* UInt64(i % 65521 + 1) }
        return sum
    }
}
