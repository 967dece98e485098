// Round trip through the file: every bit of every tensor, every attribute, the layout DESIGN.md names.
import DraftCheckpoint
import Foundation
import XCTest

final class CheckpointRoundTripTests: XCTestCase {
    func testTensorsAndAttributesRoundTripBitwise() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = SampleState(step: 1234)
        let store = CheckpointStore(directory: dir, keepLast: 3)
        let saved = try state.save(to: store)
        XCTAssertEqual(saved.url.lastPathComponent, "step-00001234.h5")
        XCTAssertEqual(try directoryNames(dir), ["latest", "step-00001234.h5"])
        XCTAssertEqual(store.latestName(), "step-00001234.h5")

        let reader = try CheckpointReader.open(saved.url)
        // Root attributes: the writer's own two first, then the caller's, in order.
        XCTAssertEqual(reader.attributeNames, ["format", "format_version", "step", "tokens_seen", "stage", "world_size",
                                               "config_yaml", "tokenizer_sha256", "betas", "empty"])
        for (name, value) in state.rootAttributes { XCTAssertEqual(reader.attributes[name], value, name) }
        XCTAssertEqual(reader.attributes["format"], .string("swiftdraft-checkpoint"))
        XCTAssertEqual(try reader.int("format_version"), CheckpointFormat.version)
        XCTAssertEqual(try reader.string("config_yaml"), state.config)  // > 64 KiB: no attribute size limit
        XCTAssertEqual(try reader.int("step", in: .optimizer), 1234)
        XCTAssertEqual(reader.groupAttributes[.optimizer]?["lr"], .double(6e-4))
        XCTAssertEqual(reader.groupAttributes[.data]?["sample_order_seed"], .int(1234))
        XCTAssertThrowsError(try reader.int("missing")) { error in
            XCTAssertTrue("\(error)".contains(saved.url.path) && "\(error)".contains("missing"), "\(error)")
        }

        // Layout: HF names under /model in model order, moments under /optimizer, int64 state under /data and /rng.
        let modelNames = SampleState.shapes.map(\.0)
        XCTAssertEqual(reader.tensors.filter { $0.group == .model }.map(\.name), modelNames)
        XCTAssertEqual(reader.tensors.filter { $0.group == .optimizer }.map(\.name),
                       modelNames.flatMap { [$0 + ".exp_avg", $0 + ".exp_avg_sq"] })
        XCTAssertEqual(reader.int64Arrays.map(\.path), ["/data/cursor", "/rng/state"])
        XCTAssertEqual(reader.dataset("model.embed_tokens.weight", in: .model)?.path, "/model/model.embed_tokens.weight")
        XCTAssertTrue(reader.datasets.allSatisfy { $0.checksum != nil })

        for (index, (name, shape)) in SampleState.shapes.enumerated() {
            let info = try XCTUnwrap(reader.dataset(name, in: .model))
            XCTAssertEqual(info.shape, shape)
            for (group, name, expected) in [(CheckpointGroup.model, name, state.parameters[index]),
                                            (.optimizer, name + ".exp_avg", state.expAvg[index]),
                                            (.optimizer, name + ".exp_avg_sq", state.expAvgSq[index])] {
                var back = [Float](repeating: 0, count: expected.count)
                try back.withUnsafeMutableBufferPointer { try reader.read(name, in: group, into: $0) }
                XCTAssertEqual(bitPatterns(back), bitPatterns(expected), "\(group.path)/\(name)")
                XCTAssertEqual(reader.dataset(name, in: group)?.checksum,
                               expected.withUnsafeBufferPointer { CheckpointChecksum.xxh64($0) })
            }
        }
        XCTAssertEqual(try reader.readInt64s("cursor", in: .data), state.cursor)
        XCTAssertEqual(try reader.readInt64s("state", in: .rng), state.rng)
        XCTAssertTrue(reader.verifyAll().isEmpty)

        // A buffer of the wrong size is an error naming the tensor, not a overrun.
        var small = [Float](repeating: 0, count: 3)
        XCTAssertThrowsError(try small.withUnsafeMutableBufferPointer {
            try reader.read("model.norm.weight", in: .model, into: $0)
        }) { XCTAssertTrue("\($0)".contains("/model/model.norm.weight"), "\($0)") }

        let (report, ok) = inspectCheckpoint(saved.url)
        XCTAssertTrue(ok, report)
        XCTAssertTrue(report.contains("/model/model.embed_tokens.weight"), report)
        XCTAssertTrue(report.contains("[64, 16]"), report)
        XCTAssertTrue(report.contains("step = 1234"), report)
        XCTAssertTrue(report.split(separator: "\n").last?.hasPrefix("verdict: OK") == true, report)
        XCTAssertFalse(report.contains("BAD"), report)
    }

    /// Reference values of xxHash64 (seed 0) published with xxHash and python-xxhash, covering the short path,
    /// the 4-lane path and every tail length class (8-, 4- and 1-byte steps).
    func testChecksumIsStandardXXH64() {
        func hash(_ text: String) -> UInt64 { Array(text.utf8).withUnsafeBytes { CheckpointChecksum.xxh64($0) } }
        XCTAssertEqual(hash(""), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(hash("a"), 0xD24E_C4F1_A98C_6E5B)
        XCTAssertEqual(hash("abc"), 0x44BC_2CF5_AD77_0999)
        XCTAssertEqual(hash("Nobody inspects the spammish repetition"), 0xFBCE_A83C_8A37_8BF1)
    }

    func testBadInputIsAnErrorNamingTheFileAndLeavesNothingBehind() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir, keepLast: 2)
        try SampleState(step: 10).save(to: store)

        // A shape that does not match the buffer, and a name with a slash: errors, the temp file removed,
        // `latest` still on the previous checkpoint.
        let values = [Float](repeating: 1, count: 6)
        for (name, shape) in [("w", [2, 4]), ("a/b", [6])] {
            XCTAssertThrowsError(try store.save(step: 20) { writer in
                try values.withUnsafeBufferPointer { try writer.write(TensorSource(name: name, shape: shape, values: $0), to: .model) }
            }) { error in
                XCTAssertTrue(error is CheckpointError)
                XCTAssertTrue("\(error)".contains("step-00000020.h5.tmp"), "\(error)")
            }
        }
        XCTAssertThrowsError(try store.save(step: 20) { writer in
            try values.withUnsafeBufferPointer {
                try writer.write(TensorSource(name: "w", shape: [6], values: $0), to: .model)
                try writer.write(TensorSource(name: "w", shape: [6], values: $0), to: .model)
            }
        }) { XCTAssertTrue("\($0)".contains("/model/w"), "\($0)") }
        XCTAssertEqual(try directoryNames(dir), ["latest", "step-00000010.h5"])
        XCTAssertEqual(store.latestName(), "step-00000010.h5")

        // Foreign files: text, a missing path, an HDF5 file that is not a checkpoint. HDF5 prints nothing.
        let text = dir.appendingPathComponent("notes.h5")
        try Data("hello".utf8).write(to: text)
        let foreign = dir.appendingPathComponent("foreign.h5")
        var errors: [String] = []
        let stderrText = try capturingStandardError {
            if let python = which("python3"),
               try runProgram(python, ["-c", "import h5py; h5py.File('\(foreign.path)', 'w').attrs['x'] = 1"]).status == 0 {
                XCTAssertThrowsError(try CheckpointReader.open(foreign)) { errors.append("\($0)") }
            }
            XCTAssertThrowsError(try CheckpointReader.open(text)) { errors.append("\($0)") }
            XCTAssertThrowsError(try CheckpointReader.open(dir.appendingPathComponent("missing.h5"))) { errors.append("\($0)") }
            XCTAssertFalse(inspectCheckpoint(text).ok)
        }
        XCTAssertEqual(stderrText, "", "HDF5 must not print its error stack")
        for error in errors {
            XCTAssertTrue(error.hasPrefix("checkpoint \(dir.path)/"), error)
            XCTAssertFalse(error.contains("\n"), error)
        }
        if errors.count == 3 { XCTAssertTrue(errors[0].contains("format = \"swiftdraft-checkpoint\""), errors[0]) }
    }
}
