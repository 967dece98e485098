import DraftCheckpoint
import Foundation
import XCTest

/// Checkpoints resume exactly, also on another number of ranks, and survive crashes and corruption.
final class ResumeTests: XCTestCase {
    /// 40 steps straight versus 20, stop, `--resume auto`, 20 more: identical losses, bitwise-identical parameters
    /// and optimizer moments; in one process and under mpirun -np 4.
    func testResumeIsBitExact() throws {
        let fixture = try RunFixture("resume")
        defer { fixture.remove() }
        for ranks in [1, 4] {
            let config = try fixture.writeConfig("r\(ranks)", everySteps: 10)
            let straight = fixture.work.appendingPathComponent("straight-\(ranks)")
            XCTAssertEqual(try fixture.train(config: config, runDirectory: straight, ranks: ranks, arguments: ["--max-steps", "40"]).status, 0)
            let split = fixture.work.appendingPathComponent("split-\(ranks)")
            XCTAssertEqual(try fixture.train(config: config, runDirectory: split, ranks: ranks, arguments: ["--max-steps", "20"]).status, 0)
            let resumed = try fixture.train(config: config, runDirectory: split, ranks: ranks, arguments: ["--max-steps", "40"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            let a = try stepLosses(straight), b = try stepLosses(split)
            XCTAssertEqual(a.count, 40)
            for step in 1...40 { XCTAssertEqual(a[step], b[step], "ranks \(ranks), step \(step)") }
            let events = try readMetrics(split).filter { $0["event"] as? String == "resume" }
            XCTAssertEqual(events.count, 1)
            let x = try checkpointTensors(checkpoint(straight, step: 40)), y = try checkpointTensors(checkpoint(split, step: 40))
            XCTAssertEqual(x.count, y.count)
            XCTAssertTrue(x.keys.contains { $0.hasPrefix("optimizer/") })
            for (name, values) in x {
                XCTAssertEqual(values.map(\.bitPattern), y[name]?.map(\.bitPattern), "ranks \(ranks): \(name) differs")
            }
        }
    }

    /// 20 steps on 4 ranks, then resumed on 2 ranks and on one process: the next losses follow the uninterrupted
    /// 4-rank run to 1e-5.
    func testElasticResume() throws {
        let fixture = try RunFixture("elastic")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 10)
        let straight = fixture.work.appendingPathComponent("straight")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: straight, ranks: 4, arguments: ["--max-steps", "30"]).status, 0)
        let reference = try stepLosses(straight)
        for ranks in [2, 1] {
            let run = fixture.work.appendingPathComponent("elastic-\(ranks)")
            XCTAssertEqual(try fixture.train(config: config, runDirectory: run, ranks: 4, arguments: ["--max-steps", "20"]).status, 0)
            let r = try fixture.train(config: config, runDirectory: run, ranks: ranks, arguments: ["--max-steps", "30"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let losses = try stepLosses(run)
            for step in 21...30 {
                let a = try XCTUnwrap(losses[step]), b = try XCTUnwrap(reference[step])
                XCTAssertLessThanOrEqual(abs(a - b) / b, 1e-5, "resumed on \(ranks) rank(s), step \(step): \(a) vs \(b)")
            }
        }
    }

    /// SIGKILL while a checkpoint is being written leaves the previous one valid and `latest` pointing at it, and
    /// `--resume auto` continues from it.
    func testCrashDuringCheckpointWrite() throws {
        let fixture = try RunFixture("crash")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 10)
        let run = fixture.work.appendingPathComponent("run")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "10"]).status, 0)

        let process = Process()
        process.executableURL = try CLI.binary
        process.arguments = ["train", "--config", config.path, "--run-dir", run.path, "--max-steps", "20", "--quiet"]
        process.environment = ProcessInfo.processInfo.environment.merging([CheckpointStore.pauseVariable: "60"]) { $1 }
        let stderr = Pipe()
        process.standardError = stderr
        try process.run()
        // Wait for the writer to announce its pause (half the tensors are in the .tmp file), then kill it.
        var seen = Data()
        let deadline = Date().addingTimeInterval(60)
        while !String(decoding: seen, as: UTF8.self).contains("paus"), Date() < deadline {
            seen.append(stderr.fileHandleForReading.availableData)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)

        let checkpoints = run.appendingPathComponent("checkpoints")
        let files = try FileManager.default.contentsOfDirectory(atPath: checkpoints.path)
        XCTAssertTrue(files.contains("step-00000020.h5.tmp"), "the killed write left its temporary file: \(files)")
        XCTAssertFalse(files.contains("step-00000020.h5"))
        let latest = try String(contentsOf: checkpoints.appendingPathComponent("latest"), encoding: .utf8)
        XCTAssertEqual(latest.trimmingCharacters(in: .whitespacesAndNewlines), "step-00000010.h5")
        XCTAssertEqual(try CLI.run(["inspect", checkpoint(run, step: 10).path]).status, 0)

        let resumed = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "20"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let events = try readMetrics(run).filter { $0["event"] as? String == "resume" }
        XCTAssertEqual((events.last?["step"] as? Int), 10)
        XCTAssertEqual(try CLI.run(["inspect", checkpoint(run, step: 20).path]).status, 0)
    }

    /// A truncated file and one with a flipped byte inside a tensor are reported by `inspect` and skipped by
    /// `--resume auto` with a warning naming the file.
    func testCorruptCheckpointsAreReportedAndSkipped() throws {
        let fixture = try RunFixture("corrupt")
        defer { fixture.remove() }
        let config = try fixture.writeConfig(everySteps: 10)
        let run = fixture.work.appendingPathComponent("run")
        XCTAssertEqual(try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "30"]).status, 0)
        let truncated = checkpoint(run, step: 30), flipped = checkpoint(run, step: 20)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: truncated.path)[.size] as? Int)
        XCTAssertEqual(truncate(truncated.path, off_t(size / 2)), 0)
        // Flip one byte in the middle of the embedding's data: find it through the checkpoint's own offsets by
        // locating the tensor's bytes in the file.
        let embedding = try XCTUnwrap(checkpointTensors(flipped)["model/model.embed_tokens.weight"])
        var bytes = try Data(contentsOf: flipped)
        let needle = embedding.withUnsafeBytes { Data($0.prefix(64)) }
        let offset = try XCTUnwrap(bytes.range(of: needle)?.lowerBound)
        bytes[offset + 100] ^= 0x40
        try bytes.write(to: flipped)

        for bad in [truncated, flipped] {
            let r = try CLI.run(["inspect", bad.path])
            XCTAssertEqual(r.status, 2, "inspect \(bad.lastPathComponent): \(r.stdout)")
            XCTAssertTrue(r.stdout.contains("BAD"), r.stdout)
        }
        let resumed = try fixture.train(config: config, runDirectory: run, arguments: ["--max-steps", "30"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains(truncated.lastPathComponent), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains(flipped.lastPathComponent), resumed.stderr)
        let events = try readMetrics(run).filter { $0["event"] as? String == "resume" }
        XCTAssertEqual(events.last?["step"] as? Int, 10)
    }

    /// Users' tools read a trainer checkpoint: h5py finds tensors and attributes by name, as does h5dump.
    func testUsersToolsReadTrainerCheckpoints() throws {
        let fixture = try RunFixture("h5py")
        defer { fixture.remove() }
        let run = fixture.work.appendingPathComponent("run")
        XCTAssertEqual(try fixture.train(config: fixture.writeConfig(), runDirectory: run, arguments: ["--max-steps", "10"]).status, 0)
        let file = checkpoint(run, step: 10)
        let script = """
            import h5py, sys
            f = h5py.File(sys.argv[1], "r")
            assert f.attrs["format"] == "swiftdraft-checkpoint", f.attrs["format"]
            assert int(f.attrs["step"]) == 10 and "tokenizer_sha256" in f.attrs and "config_yaml" in f.attrs
            w = f["model/model.embed_tokens.weight"]
            assert w.shape == (264, 32) and w.dtype == "float32"
            assert f["optimizer/model.layers.1.mlp.down_proj.weight.exp_avg"].shape == (32, 64)
            assert int(f["optimizer"].attrs["step"]) == 10
            print("h5py ok", len(f["model"]), "tensors")
            """
        let h5py = try CLI.run(["python3", "-c", script, file.path], executable: URL(fileURLWithPath: "/usr/bin/env"))
        if h5py.stderr.contains("No module named 'h5py'") { throw XCTSkip("h5py not installed") }
        XCTAssertEqual(h5py.status, 0, h5py.stderr)
        XCTAssertTrue(h5py.stdout.contains("h5py ok"))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/h5dump") else { throw XCTSkip("h5dump not installed") }
        let dump = try CLI.run(["-H", file.path], executable: URL(fileURLWithPath: "/usr/bin/h5dump"))
        XCTAssertEqual(dump.status, 0, dump.stderr)
        for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "tokenizer_sha256", "cursor"] {
            XCTAssertTrue(dump.stdout.contains(name), "h5dump -H lists \(name)")
        }
    }
}

/// A checkpoint that does not fit the config is refused with exit 2, naming the first differing tensor or key; a run
/// directory with checkpoints is not silently overwritten.
final class ResumeRefusalTests: XCTestCase {
    func testMismatchedCheckpointsAreRefused() throws {
        let fixture = try RunFixture("refuse")
        defer { fixture.remove() }
        let run = fixture.work.appendingPathComponent("run")
        XCTAssertEqual(try fixture.train(config: fixture.writeConfig(), runDirectory: run, arguments: ["--max-steps", "10"]).status, 0)
        let saved = checkpoint(run, step: 10)

        let wider = try fixture.train(config: fixture.writeConfig(), runDirectory: fixture.work.appendingPathComponent("wider"),
                                      arguments: ["--resume", saved.path, "--set", "model.ffn_dim=96"])
        XCTAssertEqual(wider.status, 2, wider.stderr)
        XCTAssertTrue(wider.stderr.contains("model.layers.0.mlp.gate_proj.weight"), wider.stderr)
        XCTAssertEqual(wider.stderr.split(separator: "\n").count, 1, wider.stderr)

        let fresh = try fixture.train(config: fixture.writeConfig(), runDirectory: run, arguments: ["--resume", "never"])
        XCTAssertEqual(fresh.status, 2, fresh.stderr)
        XCTAssertTrue(fresh.stderr.contains("--overwrite"), fresh.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: saved.path), "the refused run must not touch the checkpoints")

        // Same shapes, another vocabulary identity: shards made with another tokenizer would not match either, so
        // the check is exercised through the checkpoint alone by patching its recorded hash with h5py (last, since
        // without h5py the test stops here as skipped).
        let script = "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['tokenizer_sha256']='0'*64; f.close()"
        let patched = fixture.work.appendingPathComponent("patched.h5")
        try FileManager.default.copyItem(at: saved, to: patched)
        let patch = try CLI.run(["python3", "-c", script, patched.path], executable: URL(fileURLWithPath: "/usr/bin/env"))
        if patch.stderr.contains("No module named 'h5py'") {
            throw XCTSkip("h5py not installed (launch/setup.sh installs it): the tokenizer_sha256 refusal was not checked")
        }
        XCTAssertEqual(patch.status, 0, patch.stderr)
        let other = try fixture.train(config: fixture.writeConfig(), runDirectory: fixture.work.appendingPathComponent("other"),
                                      arguments: ["--resume", patched.path])
        XCTAssertEqual(other.status, 2, other.stderr)
        XCTAssertTrue(other.stderr.contains("tokenizer_sha256"), other.stderr)
    }
}
