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

    /// python3 with `tokenizers`, when this machine has it (for live references and diagnostics).
    static let pythonTokenizers: Bool = {
        run(["python3", "-c", "import tokenizers"]) != nil
    }()

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
