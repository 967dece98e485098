import DraftErrors
import Foundation

/// An export's output directory, written whole or not at all: files go to a temporary sibling directory, which is
/// renamed into place only when every file is written. An existing non-empty output is refused unless `overwrite`.
struct ExportDirectory {
    let output: URL
    let staging: URL

    init(output: String, overwrite: Bool) throws {
        let url = URL(fileURLWithPath: output).standardizedFileURL
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw InputError("--output \(output): exists and is not a directory") }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            if !contents.isEmpty && !overwrite {
                throw InputError("--output \(output): exists and is not empty (pass --overwrite to replace it)")
            }
        }
        self.output = url
        staging = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).partial-\(ProcessInfo.processInfo.processIdentifier)")
        try? FileManager.default.removeItem(at: staging)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { staging.appendingPathComponent(name) }

    /// Moves the finished export into place (replacing an old one only now).
    func commit() throws {
        if FileManager.default.fileExists(atPath: output.path) { try FileManager.default.removeItem(at: output) }
        try FileManager.default.moveItem(at: staging, to: output)
    }

    /// Removes what was written: nothing partial is left behind.
    func discard() { try? FileManager.default.removeItem(at: staging) }

    /// Runs `body` against the staging directory, then commits, or discards on any error.
    func write(_ body: (ExportDirectory) throws -> Void) throws {
        do {
            try body(self)
            try commit()
        } catch {
            discard()
            throw error
        }
    }
}
