import DraftData
import DraftDevice
import DraftDistill
import DraftDistributed
import DraftTraining
import Foundation
import XCTest

/// The trainer on real `distill --top-k-logits` data (written by `DistillShards` as `distill` writes it): a sharp
/// teacher that puts 0.8 on the response's next byte. Each step's metrics carry `ce_loss`, `kd_loss` and `kd_rows`;
/// the divergence falls as the draft trains; raw text replayed in the same stage takes the cross-entropy
/// (`kd_rows` below 1); a KD stage over raw text alone is refused naming the stage's key.
final class DistillationTrainingTests: XCTestCase {
    private let k = 4

    /// A distill output directory of `count` records: random byte prompts (context only), responses from a
    /// repeating sentence, and per trained row (each response byte and the EOS) the teacher's top-4.
    private func writeDistillData(_ directory: URL, fingerprint: String, count: Int = 200) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let sentence = Array("the cat sat on the mat and then it sat on the hat. ".utf8).map(Int32.init)
        var rng = SystemRandomNumberGenerator()
        let logprobs: [Float] = [0.8, 0.05, 0.05, 0.05].map { Float(log($0)) }
        let records = (0..<count).map { i -> ResponseRecord in
            let prompt = (0..<8).map { _ in Int32.random(in: 0..<256, using: &rng) }
            let offset = i % sentence.count
            let response = (0..<30).map { sentence[(offset + $0) % sentence.count] }
            var r = ResponseRecord(promptID: "p\(i)", set: nil, temperature: 1, prompt: "p", promptIDs: prompt,
                                   response: "r", responseIDs: response, finishReason: "eos", seed: 1)
            let next = response + [256]  // what each trained row predicts: the response's bytes, then EOS
            r.topKIDs = next.flatMap { id in (0..<k).map { (id + Int32($0 * 37)) % 264 } }
            r.topKLogprobs = next.flatMap { _ in logprobs }
            return r
        }
        let written = try DistillShards.write(train: records, validation: [], to: directory, eos: 256, vocabSize: 264,
                                              fingerprint: fingerprint, topK: k)
        let manifest: [String: Any] = ["format": DistillShardManifest.format, "complete": true, "top_k": k,
                                       "train": ["files": written.train.files, "tokens": written.train.tokens, "documents": count],
                                       "validation": ["files": [String](), "tokens": 0, "documents": 0]]
        try JSONSerialization.data(withJSONObject: manifest).write(to: directory.appendingPathComponent("manifest.json"))
    }

    private func train(_ fixture: RunFixture, stage: String, sources: String, run: String,
                       model: String? = nil) throws -> [[String: Any]] {
        let configURL = try fixture.writeConfig(run)
        var yaml = try String(contentsOf: configURL, encoding: .utf8)
        if let model {
            yaml = yaml.replacingOccurrences(of: "max_seq_len: 32}", with: "max_seq_len: 32, \(model)}")
        }
        yaml = yaml.replacingOccurrences(of: "sources: {code: {path: \(fixture.data.path)}}", with: sources)
        yaml = yaml.replacingOccurrences(of: "stages: [{name: pretrain, tokens: 40960, mixture: {code: 1.0}}]",
                                         with: "stages: [\(stage)]")
        try yaml.write(to: configURL, atomically: true, encoding: .utf8)
        var options = TrainOptions()
        options.runDirectory = fixture.work.appendingPathComponent(run).path
        options.maxSteps = 30
        options.quiet = true
        options.resume = .never
        let trainer = try Trainer(config: TrainingConfig.load(path: configURL.path), options: options,
                                  communicator: LocalCommunicator(), device: CPUDevice())
        XCTAssertEqual(try trainer.run().steps, 30)
        return try readMetrics(fixture.work.appendingPathComponent(run)).filter { $0["event"] == nil }
    }

    private func fixtureWithDistillData(_ name: String) throws -> (RunFixture, URL) {
        let fixture = try RunFixture(name)
        let distill = fixture.work.appendingPathComponent("distill")
        let fingerprint = try XCTUnwrap(try DataSource(name: "code", path: fixture.data.path).tokenizerFingerprint)
        try writeDistillData(distill, fingerprint: fingerprint)
        return (fixture, distill)
    }

    func testKLStageLogsItsTermsAndTheDivergenceFalls() throws {
        let (fixture, distill) = try fixtureWithDistillData("kd-train")
        defer { fixture.remove() }
        let steps = try train(fixture, stage: "{name: align, tokens: 40960, mixture: {kd: 1.0}, loss: {kind: kl}}",
                              sources: "sources: {kd: {path: \(distill.path)}}", run: "kl")
        XCTAssertEqual(steps.count, 30)
        let kd = steps.compactMap { $0["kd_loss"] as? Double }, ce = steps.compactMap { $0["ce_loss"] as? Double }
        XCTAssertEqual(kd.count, 30)
        XCTAssertEqual(ce.count, 30)
        XCTAssertTrue(steps.allSatisfy { ($0["kd_rows"] as? Double) == 1 }, "every trained row has a teacher row")
        // Under kl the loss is the divergence itself.
        for step in steps { XCTAssertEqual(step["loss"] as? Double ?? 0, step["kd_loss"] as? Double ?? 1, accuracy: 1e-9) }
        print("kd training: kd_loss \(kd.first!) -> \(kd.last!), ce_loss \(ce.first!) -> \(ce.last!) over 30 steps")
        XCTAssertLessThan(kd.last!, 0.8 * kd.first!, "kd_loss \(kd.first!) -> \(kd.last!)")
    }

    /// A subset head over the 20 ids the responses use most: the teacher's top-1 (the response's next byte) is in
    /// it, its other three entries mostly are not. Those are absent entries, their mass in the rest bucket, so the
    /// stage trains (it was refused before) and the divergence over what the head can score falls.
    func testKLStageTrainsASubsetHead() throws {
        let (fixture, distill) = try fixtureWithDistillData("kd-subset")
        defer { fixture.remove() }
        let steps = try train(fixture, stage: "{name: align, tokens: 40960, mixture: {kd: 1.0}, loss: {kind: kl}}",
                              sources: "sources: {kd: {path: \(distill.path)}}", run: "kl-subset",
                              model: "head_vocab: 20, head_vocab_source: kd")
        XCTAssertEqual(steps.count, 30)
        let kd = steps.compactMap { $0["kd_loss"] as? Double }
        let coverage = steps.compactMap { $0["head_coverage"] as? Double }
        XCTAssertEqual(kd.count, 30)
        XCTAssertTrue(kd.allSatisfy { $0.isFinite && $0 > 0 }, "\(kd)")
        XCTAssertTrue(coverage.allSatisfy { $0 > 0.9 }, "the head holds the response bytes: \(coverage)")
        XCTAssertTrue(steps.allSatisfy { ($0["kd_rows"] as? Double ?? 0) > 0.9 }, "rows with a scored teacher entry")
        print("kd training, subset head: kd_loss \(kd.first!) -> \(kd.last!) over 30 steps")
        XCTAssertLessThan(kd.last!, 0.8 * kd.first!, "kd_loss \(kd.first!) -> \(kd.last!)")
    }

    func testReplayedRawTextTakesCrossEntropyInACEKLStage() throws {
        let (fixture, distill) = try fixtureWithDistillData("kd-replay")
        defer { fixture.remove() }
        let steps = try train(fixture,
                              stage: "{name: align, tokens: 40960, mixture: {kd: 0.5, code: 0.5}, loss: {kind: ce_kl, kd_weight: 0.7}}",
                              sources: "sources: {kd: {path: \(distill.path)}, code: {path: \(fixture.data.path)}}",
                              run: "replay")
        let rows = steps.compactMap { $0["kd_rows"] as? Double }
        XCTAssertEqual(rows.count, 30)
        XCTAssertTrue(rows.allSatisfy { $0 > 0 && $0 < 1 }, "kd_rows \(rows)")
    }

    func testAStageWhoseSourcesLackTopKIsRefused() throws {
        let (fixture, distill) = try fixtureWithDistillData("kd-none")
        defer { fixture.remove() }
        XCTAssertThrowsError(try train(fixture, stage: "{name: align, tokens: 40960, mixture: {code: 1.0, kd: 0}, loss: {kind: tvd}}",
                                       sources: "sources: {kd: {path: \(distill.path)}, code: {path: \(fixture.data.path)}}",
                                       run: "none")) { error in
            XCTAssertTrue("\(error)".contains("schedule.stages[0].loss.kind"), "\(error)")
        }
    }
}
