import DraftTokenizer
import Foundation
import XCTest

/// Where the tests find the cached real assets (scripts/fetch-assets.sh) and the committed reference digests.
enum Assets {
    static let cache: URL = {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty {
            return URL(fileURLWithPath: (c as NSString).expandingTildeInPath)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }()

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let stdlib = URL(fileURLWithPath: "/usr/lib/python3.11")

    /// A cached asset, or an XCTSkip saying how to get it.
    static func require(_ relative: String) throws -> URL {
        let u = cache.appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: u.path) else {
            throw XCTSkip("\(u.path) missing: run scripts/fetch-assets.sh first (SWIFTDRAFT_CACHE=\(cache.path))")
        }
        return u
    }

    /// Corpus names of the reference TSVs: `stdlib/...` or `cache/...`.
    static func resolve(_ name: Substring) -> URL? {
        guard let slash = name.firstIndex(of: "/") else { return nil }
        let rel = String(name[name.index(after: slash)...])
        switch name[..<slash] {
        case "stdlib": return stdlib.appendingPathComponent(rel)
        case "cache": return cache.appendingPathComponent(rel)
        default: return nil
        }
    }

    static func sha256(_ ids: [Int32]) -> String {
        var h = SHA256()
        ids.withUnsafeBytes { h.update($0) }  // little-endian on every platform Swift runs this on
        return SHA256.hexString(h.finalize())
    }

    static func sha256(_ data: Data) -> String { data.withUnsafeBytes { SHA256.hex($0) } }

    /// The python the live comparisons run: `$SWIFTDRAFT_PYTHON` (launch/test.sh exports the venv that
    /// scripts/python-env.sh makes), else that venv if it exists, else python3.
    static let python: String = {
        if let p = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"], !p.isEmpty { return p }
        let venv = cache.appendingPathComponent("venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "python3"
    }()

    /// Whether `python` has `tokenizers` (for live references and diagnostics).
    static let pythonTokenizers: Bool = {
        run([python, "-c", "import tokenizers"]) != nil
    }()

    /// Throws unless `python` can import every module: a failure when the test command promised them
    /// (SWIFTDRAFT_PYTHON set), a skip naming the fix when run by hand without the venv.
    static func requirePython(_ modules: String...) throws {
        if run([python, "-c", "import " + modules.joined(separator: ", ")]) != nil { return }
        let promised = !(ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"] ?? "").isEmpty
        let message = "\(python) cannot import \(modules.joined(separator: ", ")) (make the venv with scripts/python-env.sh)"
        if promised { throw ToolMissing(message: message) }
        throw XCTSkip(message)
    }

    static func requireTokenizers() throws { try requirePython("tokenizers") }

    struct ToolMissing: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    @discardableResult
    static func run(_ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? String(decoding: out, as: UTF8.self) : nil
    }
}
