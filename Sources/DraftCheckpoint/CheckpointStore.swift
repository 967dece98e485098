// The run's checkpoints/ directory: atomic saves, `latest`, keep_last pruning, and finding a checkpoint to resume.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `CheckpointStore.save` wrote and how long it took.
public struct SavedCheckpoint: Sendable {
    /// The final file, `checkpoints/step-XXXXXXXX.h5`.
    public let url: URL
    /// The step it was saved at.
    public let step: Int
    /// Size of the file on disk.
    public let fileBytes: Int
    /// Dataset payload (tensors and int64 arrays) written by the build closure.
    public let payloadBytes: Int
    /// Build closure plus HDF5 flush and close: the data is in the OS page cache.
    public let writeSeconds: Double
    /// fsync of the file, rename, fsync of the directory, and `latest`: the data is durable.
    public let syncSeconds: Double
    /// Older checkpoints removed by keep_last.
    public let pruned: [URL]
    /// Non-fatal problems (an old checkpoint that could not be removed), one line each, naming the file.
    public let warnings: [String]

    /// Wall time of the whole save.
    public var seconds: Double { writeSeconds + syncSeconds }
    /// File size over the whole save time, in MB (10^6 bytes) per second.
    public var megabytesPerSecond: Double { seconds > 0 ? Double(fileBytes) / 1e6 / seconds : 0 }
}

/// The run's `checkpoints/` directory.
///
/// Files: `step-XXXXXXXX.h5` (the step, zero-padded to 8 digits; complete checkpoints only), `latest` (a text file
/// holding the name of the last saved one), and transient `*.tmp` files of a save in progress or one that crashed.
/// One process (rank 0) saves; `newestValid` is for startup, not for use while another process saves.
public struct CheckpointStore: Sendable {
    /// The directory (created on the first save).
    public let directory: URL
    /// How many complete checkpoints to keep; 0 or less keeps all of them.
    public let keepLast: Int

    /// Name of the file holding the last saved checkpoint's name.
    public static let latestName = "latest"
    /// Variable that makes `save` sleep (seconds) after writing half of the tensors, so a test can kill it.
    public static let pauseVariable = "SWIFTDRAFT_TEST_CHECKPOINT_PAUSE_S"

    public init(directory: URL, keepLast: Int) {
        self.directory = directory
        self.keepLast = keepLast
    }

    /// `step-XXXXXXXX.h5` for `step`.
    public static func fileName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".h5"
    }

    /// The step of a complete checkpoint's file name, or nil for any other name.
    public static func step(fromFileName name: String) -> Int? {
        guard name.hasPrefix("step-"), name.hasSuffix(".h5") else { return nil }
        let digits = name.dropFirst(5).dropLast(3)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// The final URL of the checkpoint for `step`.
    public func url(step: Int) -> URL { directory.appendingPathComponent(Self.fileName(step: step)) }

    /// Complete checkpoints (final names only, whether or not they verify), oldest step first.
    public func checkpoints() throws -> [(step: Int, url: URL)] {
        guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw CheckpointError(path: directory.path, reason: "expected a readable checkpoint directory (\(error))")
        }
        return names.compactMap { name in Self.step(fromFileName: name).map { ($0, directory.appendingPathComponent(name)) } }
            .sorted { $0.step < $1.step }
    }

    /// The file name `latest` holds, or nil when there is none.
    public func latestName() -> String? {
        let url = directory.appendingPathComponent(Self.latestName)
        guard let data = FileManager.default.contents(atPath: url.path),
              let text = String(data: data, encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }

    /// Saves a checkpoint atomically: builds `step-XXXXXXXX.h5.tmp`, flushes, closes and fsyncs it, renames it to
    /// `step-XXXXXXXX.h5`, fsyncs the directory, then points `latest` at it (temp name + rename + fsync), then prunes
    /// to `keepLast` (never the file just saved). A failure anywhere before the rename removes the temporary file and
    /// leaves the directory as it was. `expectedTensorCount` is only used to place the test pause halfway; without
    /// it the pause comes after the first tensor.
    public func save(step: Int, expectedTensorCount: Int? = nil,
                     build: (inout CheckpointWriter) throws -> Void) throws -> SavedCheckpoint {
        guard step >= 0 else { throw CheckpointError(path: directory.path, reason: "expected a step >= 0, got \(step)") }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(path: directory.path, reason: "expected to create the checkpoint directory (\(error))")
        }
        let finalURL = url(step: step)
        let temporary = directory.appendingPathComponent(Self.fileName(step: step) + ".tmp")
        let start = monotonicSeconds()

        var payload = 0
        try withHDF5 {
            var writer: CheckpointWriter
            do {
                writer = try CheckpointWriter(creating: temporary, pause: pausePoint(expectedTensorCount))
            } catch {
                unlink(temporary.path)
                throw error
            }
            do {
                try build(&writer)
                payload = writer.payloadBytes
                try writer.finish()
            } catch {
                writer.abandon()
                unlink(temporary.path)
                throw error
            }
        }
        let written = monotonicSeconds()
        do {
            try fsyncPath(temporary.path, directory: false)
            try renamePath(temporary, to: finalURL)
        } catch {
            unlink(temporary.path)
            throw error
        }
        try fsyncPath(directory.path, directory: true)
        try writeLatest(Self.fileName(step: step))
        let synced = monotonicSeconds()

        var warnings: [String] = []
        let pruned = prune(keeping: finalURL, warnings: &warnings)
        let size = (try? FileManager.default.attributesOfItem(atPath: finalURL.path)[.size] as? Int) ?? 0
        return SavedCheckpoint(url: finalURL, step: step, fileBytes: size, payloadBytes: payload,
                               writeSeconds: written - start, syncSeconds: synced - written, pruned: pruned,
                               warnings: warnings)
    }

    /// The checkpoint `--resume auto` should load: the newest complete one (highest step; a `latest` naming a file
    /// outside the step-XXXXXXXX.h5 pattern is tried first) that opens and verifies every checksum. Each one skipped
    /// gives a warning line naming the file, for the caller to print. Leftover `*.tmp` files from a crashed save
    /// are removed. Throws only when the directory exists but cannot be listed.
    public func newestValid() throws -> (url: URL?, warnings: [String]) {
        var warnings: [String] = []
        guard FileManager.default.fileExists(atPath: directory.path) else { return (nil, []) }
        removeTemporaryFiles(warnings: &warnings)
        var candidates = try checkpoints().reversed().map(\.url)
        if let latest = latestName() {
            let latestURL = directory.appendingPathComponent(latest)
            if !FileManager.default.fileExists(atPath: latestURL.path) {
                warnings.append("warning: \(directory.appendingPathComponent(Self.latestName).path) names \(latest), "
                                + "which does not exist; using the newest complete checkpoint instead")
            } else if Self.step(fromFileName: latest) == nil, !latest.contains("/") {
                candidates.insert(latestURL, at: 0)
            }
        }
        for candidate in candidates {
            do {
                try CheckpointReader(url: candidate).verify()
                return (candidate, warnings)
            } catch {
                warnings.append("warning: skipping checkpoint \(candidate.path): \(reason(of: error))")
            }
        }
        return (nil, warnings)
    }

    // MARK: - Steps of a save

    private func pausePoint(_ expectedTensorCount: Int?) -> (seconds: Double, afterTensor: Int)? {
        guard let text = ProcessInfo.processInfo.environment[Self.pauseVariable],
              let seconds = Double(text), seconds > 0 else { return nil }
        return (seconds, max(1, (expectedTensorCount ?? 1) / 2))
    }

    /// Writes `latest` through a temporary name so a reader sees either the old name or the new one, never half.
    private func writeLatest(_ name: String) throws {
        let temporary = directory.appendingPathComponent(Self.latestName + ".tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw posixError(temporary.path, "expected to create") }
        let bytes = Array((name + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary.path)
            throw posixError(temporary.path, "expected to write and fsync")
        }
        do {
            try renamePath(temporary, to: directory.appendingPathComponent(Self.latestName))
        } catch {
            unlink(temporary.path)
            throw error
        }
        try fsyncPath(directory.path, directory: true)
    }

    /// Removes complete checkpoints beyond the newest `keepLast`, never `kept` (the one just saved).
    private func prune(keeping kept: URL, warnings: inout [String]) -> [URL] {
        guard keepLast > 0, let all = try? checkpoints() else { return [] }
        let others = all.map(\.url).filter { $0.lastPathComponent != kept.lastPathComponent }
        let excess = others.count - (keepLast - 1)
        guard excess > 0 else { return [] }
        var removed: [URL] = []
        for url in others.prefix(excess) {
            if unlink(url.path) == 0 {
                removed.append(url)
            } else {
                warnings.append("warning: could not remove old checkpoint \(url.path): \(String(cString: strerror(errno)))")
            }
        }
        return removed
    }

    private func removeTemporaryFiles(warnings: inout [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
        for name in names where name.hasSuffix(".tmp") && (name.hasPrefix("step-") || name == Self.latestName + ".tmp") {
            let path = directory.appendingPathComponent(name).path
            if unlink(path) == 0 {
                warnings.append("warning: removed incomplete checkpoint \(path) (a save was interrupted)")
            }
        }
    }

    private func reason(of error: Error) -> String {
        if let error = error as? CheckpointError { return error.reason }
        return "\(error)"
    }
}

// MARK: - POSIX helpers

private func posixError(_ path: String, _ expected: String) -> CheckpointError {
    CheckpointError(path: path, reason: "\(expected) (\(String(cString: strerror(errno))))")
}

/// fsync through a fresh descriptor: Linux syncs the inode's dirty pages whichever descriptor wrote them.
private func fsyncPath(_ path: String, directory: Bool) throws {
    let fd = open(path, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
    guard fd >= 0 else { throw posixError(path, "expected to open for fsync") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw posixError(path, "expected fsync to succeed") }
}

private func renamePath(_ from: URL, to: URL) throws {
    guard rename(from.path, to.path) == 0 else {
        throw posixError(from.path, "expected to rename to \(to.lastPathComponent)")
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
