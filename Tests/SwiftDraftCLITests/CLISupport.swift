import Foundation
import XCTest

/// Runs the built `swiftdraft` binary (it sits next to the test bundle in the build directory).
enum CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: URL {
        get throws {
            var directory = Bundle.main.bundleURL
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent("swiftdraft")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
                    let sibling = bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("swiftdraft")
                    if FileManager.default.isExecutableFile(atPath: sibling.path) { return sibling }
                }
                directory = directory.deletingLastPathComponent()
            }
            throw XCTSkip("swiftdraft binary not found next to the tests (build it with `swift build -c release`)")
        }
    }

    /// Runs `swiftdraft args...` (or `executable` with args) in `directory`, with `environment` added.
    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:],
                    executable: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = try executable ?? binary
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Drain both pipes while the child runs so a chatty child never blocks on a full pipe.
        final class Collected: @unchecked Sendable { var data = Data() }
        let outData = Collected(), errData = Collected()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outData.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        process.waitUntilExit()
        group.wait()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData.data, as: UTF8.self),
                      stderr: String(decoding: errData.data, as: UTF8.self))
    }

    static func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// The lines of a run's metrics.jsonl as dictionaries.
func readMetrics(_ runDirectory: URL) throws -> [[String: Any]] {
    let text = try String(contentsOf: runDirectory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    return text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}
