// Faults: a save killed mid-write, truncated and bit-flipped files, and keep_last pruning.
import DraftCheckpoint
import Foundation
import XCTest

final class CheckpointFaultTests: XCTestCase {
    /// The crash helper is built next to the test bundle (same scratch path and configuration).
    private func helperPath() throws -> String {
        var directories: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        directories.append(Bundle.main.bundleURL.deletingLastPathComponent())
        directories.append(Bundle(for: Self.self).bundleURL.deletingLastPathComponent())
        for dir in directories {
            let path = dir.appendingPathComponent("checkpoint-crash-helper").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        XCTFail("checkpoint-crash-helper not found next to the tests in \(directories.map(\.path)); build all targets")
        throw CheckpointError(path: "checkpoint-crash-helper", reason: "expected the helper executable")
    }

    func testSIGKILLDuringWriteKeepsThePreviousCheckpoint() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir, keepLast: 1)
        let previous = try SampleState(step: 10).save(to: store)

        // The child writes 8 tensors of 4 MB for step 20 and pauses after 4 (announced on stderr): kill it there.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try helperPath())
        process.arguments = [dir.path, "20", "1", "8", "1000000"]
        var environment = ProcessInfo.processInfo.environment
        environment[CheckpointStore.pauseVariable] = "120"
        process.environment = environment
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        var announced = ""
        while !announced.contains("paused") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            announced += String(decoding: chunk, as: UTF8.self)
        }
        let temporary = dir.appendingPathComponent("step-00000020.h5.tmp")
        let partialExisted = FileManager.default.fileExists(atPath: temporary.path)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        watchdog.cancel()
        XCTAssertTrue(announced.contains("after 4 tensors"), "the helper did not pause: \(announced)")
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        XCTAssertEqual(process.terminationStatus, SIGKILL)
        XCTAssertTrue(partialExisted, "the kill should land while the temporary file is being written")

        // The partial file never got the final name, `latest` still names the previous one, which is intact.
        XCTAssertEqual(try directoryNames(dir), ["latest", "step-00000010.h5", "step-00000020.h5.tmp"])
        XCTAssertEqual(store.latestName(), "step-00000010.h5")
        let (url, warnings) = try store.newestValid()
        XCTAssertEqual(url?.lastPathComponent, previous.url.lastPathComponent)
        XCTAssertFalse(warnings.isEmpty, "removing the leftover .tmp file should be reported")
        XCTAssertTrue(warnings.allSatisfy { $0.contains("step-00000020.h5.tmp") && $0.contains("removed") }, "\(warnings)")
        XCTAssertEqual(try directoryNames(dir), ["latest", "step-00000010.h5"], "leftover .tmp files are removed")
        XCTAssertTrue(inspectCheckpoint(previous.url).ok)

        // The run goes on: the next save succeeds and prunes to keep_last = 1.
        let next = try SampleState(step: 20).save(to: store)
        XCTAssertEqual(try directoryNames(dir), ["latest", "step-00000020.h5"])
        XCTAssertEqual(try store.newestValid().url?.lastPathComponent, next.url.lastPathComponent)
    }

    func testTruncatedAndFlippedFilesAreReportedBadAndSkipped() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir, keepLast: 5)
        let good = try SampleState(step: 10).save(to: store)
        let flippedState = SampleState(step: 20)
        let flipped = try flippedState.save(to: store)
        let truncated = try SampleState(step: 30).save(to: store)

        // Truncate step 30 to half its size.
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: truncated.url.path)[.size] as? Int)
        XCTAssertEqual(truncate(truncated.url.path, off_t(size / 2)), 0)

        // Flip one byte in the middle of /optimizer/model.embed_tokens.weight.exp_avg's data, found by its bytes.
        var bytes = try Data(contentsOf: flipped.url)
        let tensorBytes = flippedState.expAvg[0].withUnsafeBytes { Data($0) }
        let range = try XCTUnwrap(bytes.range(of: tensorBytes), "tensor data should be stored contiguously")
        bytes[range.lowerBound + tensorBytes.count / 2] ^= 0x10
        try bytes.write(to: flipped.url)

        var reports: [(String, Bool)] = []
        let stderrText = capturingStandardError {
            reports = [truncated.url, flipped.url, good.url].map { inspectCheckpoint($0) }
        }
        XCTAssertEqual(stderrText, "", "HDF5 must not print its error stack")
        let (truncatedReport, truncatedOK) = reports[0]
        XCTAssertFalse(truncatedOK, truncatedReport)
        XCTAssertTrue(truncatedReport.contains("verdict: BAD"), truncatedReport)
        XCTAssertTrue(truncatedReport.contains("step-00000030.h5"), truncatedReport)

        let (flippedReport, flippedOK) = reports[1]
        XCTAssertFalse(flippedOK, flippedReport)
        let badLines = flippedReport.split(separator: "\n").filter { $0.hasSuffix("BAD") }
        XCTAssertEqual(badLines.count, 1, flippedReport)
        XCTAssertTrue(badLines.first?.contains("/optimizer/model.embed_tokens.weight.exp_avg ") == true, flippedReport)
        XCTAssertTrue(flippedReport.contains("verdict: BAD, 1 of 17 datasets"), flippedReport)
        XCTAssertTrue(reports[2].1, reports[2].0)

        // Reading the damaged tensor is an error naming file and tensor.
        let reader = try CheckpointReader.open(flipped.url)
        var buffer = [Float](repeating: 0, count: 64 * 16)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBufferPointer {
            try reader.read("model.embed_tokens.weight.exp_avg", in: .optimizer, into: $0)
        }) { error in
            XCTAssertTrue("\(error)".contains(flipped.url.path), "\(error)")
            XCTAssertTrue("\(error)".contains("checksum"), "\(error)")
        }
        XCTAssertThrowsError(try CheckpointReader.open(truncated.url)) {
            XCTAssertTrue("\($0)".contains(truncated.url.path), "\($0)")
        }

        // --resume auto: newest first, both damaged ones skipped with a warning naming each file.
        XCTAssertEqual(store.latestName(), "step-00000030.h5")
        let (url, warnings) = try store.newestValid()
        XCTAssertEqual(url?.path, good.url.path)
        XCTAssertEqual(warnings.count, 2, "\(warnings)")
        guard warnings.count == 2 else { return }
        XCTAssertTrue(warnings[0].contains(truncated.url.path), warnings[0])
        XCTAssertTrue(warnings[1].contains(flipped.url.path), warnings[1])
        XCTAssertTrue(warnings[1].contains("/optimizer/model.embed_tokens.weight.exp_avg"), warnings[1])

        // Nothing valid at all: no checkpoint, and a warning per file.
        try FileManager.default.removeItem(at: good.url)
        let none = try store.newestValid()
        XCTAssertNil(none.url)
        XCTAssertEqual(none.warnings.count, 2)
    }

    func testKeepLastKeepsExactlyTheNewestCompleteCheckpoints() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir, keepLast: 3)
        // A leftover temp file and an unrelated file are neither counted nor touched by pruning.
        try Data("junk".utf8).write(to: dir.appendingPathComponent("step-00000099.h5.tmp"))
        try Data("notes".utf8).write(to: dir.appendingPathComponent("README"))
        var pruned: [String] = []
        for step in [100, 200, 300, 400, 500] {
            let saved = try SampleState(step: step).save(to: store)
            pruned += saved.pruned.map(\.lastPathComponent)
            XCTAssertEqual(store.latestName(), saved.url.lastPathComponent)
            XCTAssertLessThanOrEqual(try store.checkpoints().count, 3)
        }
        XCTAssertEqual(pruned, ["step-00000100.h5", "step-00000200.h5"])
        XCTAssertEqual(try store.checkpoints().map(\.step), [300, 400, 500])
        XCTAssertEqual(try directoryNames(dir),
                       ["README", "latest", "step-00000099.h5.tmp", "step-00000300.h5", "step-00000400.h5",
                        "step-00000500.h5"])

        // Steps beyond 8 digits still sort by number; keepLast 0 keeps everything.
        let all = CheckpointStore(directory: dir, keepLast: 0)
        try SampleState(step: 123_456_789).save(to: all)
        try SampleState(step: 600).save(to: all)
        XCTAssertEqual(try all.checkpoints().map(\.step), [300, 400, 500, 600, 123_456_789])
        XCTAssertEqual(CheckpointStore.fileName(step: 7), "step-00000007.h5")
        // `latest` names the last save; resume still takes the highest step.
        XCTAssertEqual(all.latestName(), "step-00000600.h5")
        XCTAssertEqual(try all.newestValid().url?.lastPathComponent, "step-123456789.h5")
    }
}
