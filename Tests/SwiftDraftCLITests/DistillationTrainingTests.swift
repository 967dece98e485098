import DraftData
import DraftDevice
import DraftDistributed
import DraftTraining
import Foundation
import XCTest

/// The trainer's distillation wiring, in process, with teacher rows made from the data itself (a sharp teacher that
/// puts 0.85 on the next byte): each step's metrics carry `ce_loss`, `kd_loss` and `kd_rows`; the divergence falls as
/// the draft trains; replayed raw text in the same stage takes the cross-entropy (`kd_rows` below 1).
final class DistillationTrainingTests: XCTestCase {
    /// Teacher rows derived from a sample's targets; sources named in `carrying` have them, the others do not.
    final class NextByteTeacher: TeacherRowSource {
        let loader: MixtureLoader
        let carrying: Set<Int>
        let teacherK: Int? = 4
        private let logprobs: [Float] = [0.85, 0.05, 0.03, 0.02].map { Float(log($0)) }

        init(loader: MixtureLoader, carrying names: Set<String>) {
            self.loader = loader
            carrying = Set(loader.sourceNames.indices.filter { names.contains(loader.sourceNames[$0]) })
        }

        func carriesTeacher(source index: Int) -> Bool { carrying.contains(index) }

        func fillTeacher(_ sample: SampleReference, ids: UnsafeMutablePointer<Int32>,
                         logprobs out: UnsafeMutablePointer<Float>) {
            let seqLen = loader.seqLen, k = 4
            var tokens = [Int32](repeating: 0, count: seqLen), targets = tokens
            tokens.withUnsafeMutableBufferPointer { t in
                targets.withUnsafeMutableBufferPointer { loader.fill(sample, tokens: t.baseAddress!, targets: $0.baseAddress!) }
            }
            for r in 0..<seqLen {
                for i in 0..<k {
                    ids[r * k + i] = targets[r] < 0 ? -1 : (targets[r] + Int32(i * 37)) % 264
                    out[r * k + i] = targets[r] < 0 ? 0 : logprobs[i]
                }
            }
        }
    }

    private func train(_ fixture: RunFixture, stage: String, sources: String, carrying: Set<String>,
                       run: String) throws -> [[String: Any]] {
        let configURL = try fixture.writeConfig(run, extra: "")
        var yaml = try String(contentsOf: configURL, encoding: .utf8)
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
                                  communicator: LocalCommunicator(), device: CPUDevice(),
                                  teacherRows: { NextByteTeacher(loader: $0, carrying: carrying) })
        XCTAssertEqual(try trainer.run().steps, 30)
        return try readMetrics(fixture.work.appendingPathComponent(run)).filter { $0["event"] == nil }
    }

    func testKLStageLogsItsTermsAndTheDivergenceFalls() throws {
        let fixture = try RunFixture("kd-train")
        defer { fixture.remove() }
        let steps = try train(fixture, stage: "{name: align, tokens: 40960, mixture: {code: 1.0}, loss: {kind: kl}}",
                              sources: "sources: {code: {path: \(fixture.data.path)}}", carrying: ["code"], run: "kl")
        XCTAssertEqual(steps.count, 30)
        let kd = steps.compactMap { $0["kd_loss"] as? Double }, ce = steps.compactMap { $0["ce_loss"] as? Double }
        XCTAssertEqual(kd.count, 30)
        XCTAssertEqual(ce.count, 30)
        XCTAssertTrue(steps.allSatisfy { ($0["kd_rows"] as? Double) == 1 }, "every target row has a teacher row")
        // Under kl the loss is the divergence itself.
        for step in steps { XCTAssertEqual(step["loss"] as? Double ?? 0, step["kd_loss"] as? Double ?? 1, accuracy: 1e-9) }
        print("kd training: kd_loss \(kd.first!) -> \(kd.last!), ce_loss \(ce.first!) -> \(ce.last!) over 30 steps")
        XCTAssertLessThan(kd.last!, 0.8 * kd.first!, "kd_loss \(kd.first!) -> \(kd.last!)")
    }

    func testReplayedRawTextTakesCrossEntropyInACEKLStage() throws {
        let fixture = try RunFixture("kd-replay")
        defer { fixture.remove() }
        let steps = try train(fixture,
                              stage: "{name: align, tokens: 40960, mixture: {distill: 0.5, replay: 0.5}, loss: {kind: ce_kl, kd_weight: 0.7}}",
                              sources: "sources: {distill: {path: \(fixture.data.path)}, replay: {path: \(fixture.data.path)}}",
                              carrying: ["distill"], run: "replay")
        let rows = steps.compactMap { $0["kd_rows"] as? Double }
        XCTAssertEqual(rows.count, 30)
        XCTAssertTrue(rows.allSatisfy { $0 > 0 && $0 < 1 }, "kd_rows \(rows)")
        XCTAssertEqual(rows.reduce(0, +) / Double(rows.count), 0.5, accuracy: 0.15)
    }

    func testAStageWhoseSourcesLackTopKIsRefused() throws {
        let fixture = try RunFixture("kd-none")
        defer { fixture.remove() }
        XCTAssertThrowsError(try train(fixture, stage: "{name: align, tokens: 40960, mixture: {code: 1.0}, loss: {kind: tvd}}",
                                       sources: "sources: {code: {path: \(fixture.data.path)}}", carrying: [],
                                       run: "none")) { error in
            XCTAssertTrue("\(error)".contains("schedule.stages[0].loss.kind"), "\(error)")
        }
    }
}
