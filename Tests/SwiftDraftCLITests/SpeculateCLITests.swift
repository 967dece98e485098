import Foundation
import XCTest

/// `swiftdraft speculate` against the real target (SmolLM2 Q4_1) with a draft SwiftDraft trained: greedy output equal
/// to the target's plain greedy output, the report's fields, and the refusals (exit 2, one line naming both files).
final class SpeculateCLITests: XCTestCase {
    static var work: URL!
    static var run: URL?

    override class func setUp() {
        super.setUp()
        do {
            work = try CLI.temporaryDirectory("speculate")
            run = try SmolLM2DraftFixture.train(in: work, steps: 24, checkpointEvery: 12)
        } catch {
            XCTFail("\(error)")
        }
    }

    override class func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
        super.tearDown()
    }

    func prompts(_ name: String, _ lines: [String]) throws -> URL {
        let url = Self.work.appendingPathComponent(name)
        try (lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")).write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func draft() throws -> URL { try XCTUnwrap(Self.run, "the draft's training failed") }

    func testGreedySpeculationWithATrainedDraftIsLossless() throws {
        let file = try prompts("greedy.jsonl", [
            #"{"id": "c1", "set": "code", "prompt": "import json\n\ndef load(path):\n    with open(path) as f:"}"#,
            #"{"id": "t1", "set": "text", "prompt": "The weather was fine and the road"}"#,
            #"{"id": "i1", "set": "instructions", "messages": [{"role": "user", "content": "Name three colours."}]}"#,
        ])
        let r = try CLI.run(["speculate", "--target", SmolLM2DraftFixture.targetGGUF.path, "--draft", try draft().path,
                             "--prompts", file.path, "--temperature", "0", "--gamma", "3", "--max-new-tokens", "24",
                             "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let rows = try XCTUnwrap(report["prompts"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 3)
        var proposed = 0, accepted = 0
        for row in rows {
            let spec = try XCTUnwrap(row["output_ids"] as? [Int]), plain = try XCTUnwrap(row["plain_output_ids"] as? [Int])
            XCTAssertFalse(plain.isEmpty)
            XCTAssertEqual(spec, plain, "prompt \(row["id"] ?? "?"): speculative greedy output differs from the target's")
            proposed += try XCTUnwrap(row["proposed"] as? Int)
            accepted += try XCTUnwrap(row["accepted"] as? Int)
        }
        let overall = try XCTUnwrap(report["overall"] as? [String: Any])
        XCTAssertEqual(Set((report["sets"] as? [String: Any])?.keys.map { $0 } ?? []), ["code", "text", "instructions"])
        for key in ["acceptance_rate", "tau", "per_position", "mbsu", "mbsu_bytes", "tokens_per_s_plain",
                    "tokens_per_s_spec", "speedup", "draft_s", "target_s", "decode_speedup", "pass_s", "plain_step_s",
                    "pass_cost_steps"] {
            XCTAssertNotNil(overall[key], key)
        }
        // The decode figures leave each run's prefill out, so they are faster than the end-to-end ones.
        for side in ["plain", "spec"] {
            let prefill = try XCTUnwrap(overall["prefill_s_\(side)"] as? Double)
            XCTAssertGreaterThan(prefill, 0, side)
            let decode = try XCTUnwrap(overall["decode_tokens_per_s_\(side)"] as? Double)
            XCTAssertGreaterThan(decode, try XCTUnwrap(overall["tokens_per_s_\(side)"] as? Double), side)
        }
        let rate = try XCTUnwrap(overall["acceptance_rate"] as? Double)
        XCTAssertEqual(rate, Double(accepted) / Double(proposed), accuracy: 1e-9)
        print("trained draft, greedy: accepted \(accepted) of \(proposed)")
    }

    func assertRefused(_ arguments: [String], mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(["speculate"] + arguments)
        XCTAssertEqual(r.status, 2, "expected exit 2: \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "'\(m)' missing from: \(r.stderr)", file: file, line: line) }
        XCTAssertTrue(r.stdout.isEmpty, "no report on a refusal", file: file, line: line)
    }

    func testBadInput() throws {
        let target = SmolLM2DraftFixture.targetGGUF.path, draft = try draft().path
        let good = try prompts("one.jsonl", [#"{"id": "a", "set": "text", "prompt": "Hello there"}"#])
        // A Llama model with another tokenizer (the loader tests' tiny HF fixture).
        let other = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("DraftInferenceTests/Fixtures/tiny/llama-gqa").path
        try assertRefused(["--target", target, "--draft", other, "--prompts", good.path],
                          mentions: [target, other, "tokenizer", "fingerprint"])
        try assertRefused(["--target", target, "--draft", draft, "--prompts", good.path, "--gamma", "0"],
                          mentions: ["--gamma", "0"])
        try assertRefused(["--target", target, "--draft", draft, "--prompts", good.path, "--draft-p-min", "1.5"],
                          mentions: ["--draft-p-min", "1.5"])
        let long = String(repeating: "word ", count: 120)
        let tooLong = try prompts("long.jsonl", [#"{"id": "long", "set": "text", "prompt": "\#(long)"}"#])
        try assertRefused(["--target", target, "--draft", draft, "--prompts", tooLong.path],
                          mentions: [tooLong.path, "long", "context", "draft"])
        let empty = try prompts("empty.jsonl", [])
        try assertRefused(["--target", target, "--draft", draft, "--prompts", empty.path], mentions: [empty.path, "no prompts"])
    }
}
