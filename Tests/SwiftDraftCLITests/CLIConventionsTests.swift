import DraftDevice
import DraftDistributed
import DraftErrors
import DraftTraining
import Foundation
import XCTest

/// Issue 9, item 8: argument errors are bad input (exit 2, one line naming the option); help still exits 0; bad input
/// is recognised through the `BadInputError` protocol.
final class CLIConventionsTests: XCTestCase {
    private func expectUsageError(_ arguments: [String], naming option: String,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(arguments)
        XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("error: ") == true, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(option), "names \(option): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, r.stdout, file: file, line: line)
    }

    func testMissingRequiredOptionIsExitTwo() throws {
        try expectUsageError(["train"], naming: "--config")
        try expectUsageError(["bench"], naming: "--config")
        try expectUsageError(["encode"], naming: "--tokenizer")
        try expectUsageError(["tokenize", "--tokenizer", "bytes", "--input", "/dev/null"], naming: "--output")
    }

    func testUnknownFlagAndBadValuesAreExitTwo() throws {
        try expectUsageError(["train", "--config", "c.yaml", "--bogus"], naming: "--bogus")
        try expectUsageError(["bench", "--config", "c.yaml", "--steps", "many"], naming: "--steps")
        try expectUsageError(["bench", "--config", "c.yaml", "--steps", "0"], naming: "--steps")
        try expectUsageError(["train", "--config", "c.yaml", "--max-steps", "0"], naming: "--max-steps")
        try expectUsageError(["plan", "--config", "c.yaml", "--devices", "-1"], naming: "--devices")
        try expectUsageError(["tokenize", "--tokenizer", "bytes", "--input", "/dev/null", "--output", "/tmp/x",
                              "--format", "xml"], naming: "--format")
        try expectUsageError(["tokenize", "--tokenizer", "bytes", "--input", "/dev/null", "--output", "/tmp/x",
                              "--val-fraction", "1.5"], naming: "--val-fraction")
        try expectUsageError(["frobnicate"], naming: "frobnicate")
    }

    func testHelpStillExitsZero() throws {
        for arguments in [["--help"], ["train", "--help"], ["help", "bench"]] {
            let r = try CLI.run(arguments)
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("USAGE"), r.stdout)
        }
        let train = try CLI.run(["train", "--help"])
        for option in ["--config", "--set", "--device", "--resume"] {
            XCTAssertTrue(train.stdout.contains(option), "train --help lists \(option)")
        }
    }

    /// The exit code comes from the error itself: module error types adopt `BadInputError`; a device error is bad
    /// input or a runtime failure by kind; a launcher's malformed environment is bad input, an MPI failure is not.
    func testExitCodeFollowsTheErrorProtocol() {
        XCTAssertEqual(exitCode(for: ConfigError("x")), 2)
        XCTAssertEqual(exitCode(for: InputError("x")), 2)
        for kind in [DeviceError.Kind.outOfMemory, .invalidArgument, .plugin] {
            XCTAssertEqual(exitCode(for: DeviceError(kind, "x")), 2, "\(kind)")
        }
        for kind in [DeviceError.Kind.unsupported, .nonFinite] {
            XCTAssertEqual(exitCode(for: DeviceError(kind, "x")), 1, "\(kind)")
        }
        XCTAssertEqual(exitCode(for: DistributedError.environment("SLURM_LOCALID=x")), 2)
        XCTAssertEqual(exitCode(for: DistributedError.mpi(call: "MPI_Allreduce", code: 1, message: "x")), 1)
        XCTAssertEqual(exitCode(for: TrainingFailure("x")), 1)
        XCTAssertEqual(exitCode(for: CocoaError(.fileNoSuchFile)), 1)
    }
}
