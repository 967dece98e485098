import DraftDevice
import DraftFormats
import DraftModel
import Foundation
import XCTest

/// The token-level distillation losses (`kl`, `tvd`, `ce_kl`) against PyTorch autograd in float64
/// (scripts/reference/make_kd_fixtures.py): the fused kernel's per-row losses and logit gradients, and a whole tiny
/// Llama's loss and parameter gradients; then central differences through the model for each kind.
final class DistillationLossTests: XCTestCase {
    /// The fixture's kinds as the model takes them (`ce_kl`'s weight from the fixture's metadata).
    private func kinds(_ file: SafeTensorsFile) throws -> [(String, TokenLoss)] {
        let weights = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(file.metadata["kinds"]).utf8))
                                    as? [String: Double])
        return [("kl", .distillation(.kl, kdWeight: 1)), ("tvd", .distillation(.tvd, kdWeight: 1)),
                ("ce_kl", .distillation(.kl, kdWeight: Float(try XCTUnwrap(weights["ce_kl"]))))]
    }

    private func fixture(_ name: String) throws -> SafeTensorsFile {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors",
                                                  subdirectory: "Fixtures"), "fixture \(name) is missing")
        return try SafeTensorsFile(contentsOf: url)
    }

    /// The kernel on the fixture's rows: (losses, ce, kd, gradient of the mean loss).
    private func runKernel(_ file: SafeTensorsFile, _ loss: TokenLoss, device: any Device) throws
        -> (losses: [Float], ce: [Float], kd: [Float], gradient: [Float]) {
        guard case let .distillation(divergence, weight) = loss else { throw XCTSkip("not a distillation loss") }
        let logits = try XCTUnwrap(file.floats("logits")), targets = try XCTUnwrap(file.int32s("targets"))
        let ids = try XCTUnwrap(file.int32s("teacher_ids")), logprobs = try XCTUnwrap(file.floats("teacher_logprobs"))
        let rows = targets.count, vocab = logits.count / rows, k = ids.count / rows
        let count = targets.filter { $0 >= 0 }.count
        let dLogits = try device.upload(logits)
        let losses = try device.allocate(Float.self, count: rows), ce = try device.allocate(Float.self, count: rows)
        let kd = try device.allocate(Float.self, count: rows)
        try device.distillationLossForwardBackward(
            logits: dLogits, targets: try device.upload(targets), teacherIds: try device.upload(ids),
            teacherLogprobs: try device.upload(logprobs), losses: losses, ceLosses: ce, kdLosses: kd, rows: rows,
            vocab: vocab, topK: k, divergence: divergence, kdWeight: weight, lossScale: 1 / Float(count))
        return (try device.download(losses, count: rows), try device.download(ce, count: rows),
                try device.download(kd, count: rows), try device.download(dLogits, count: rows * vocab))
    }

    func testKernelMatchesPyTorchForEachKind() throws {
        let file = try fixture("kd-loss")
        for (name, loss) in try kinds(file) {
            let ours = try runKernel(file, loss, device: CPUDevice(threads: 2))
            for (term, values) in [("losses", ours.losses), ("ce", ours.ce), ("kd", ours.kd)] {
                let reference = try XCTUnwrap(file.floats("\(name).\(term)"))
                let worst = zip(values, reference).map { Double(abs($0 - $1)) / max(1, Double(abs($1))) }.max() ?? .infinity
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(name) \(term): \(values) vs \(reference)")
            }
            let gradient = try XCTUnwrap(file.floats("\(name).grad"))
            let error = relativeError(ours.gradient, gradient)
            let maxDiff = zip(ours.gradient, gradient).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(error, 1e-5, "\(name) gradient")
            XCTAssertLessThanOrEqual(maxDiff, 1e-6, "\(name) gradient max |diff|")
            print("kd kernel \(name): gradient rel err \(error), max |diff| \(maxDiff)")
        }
    }

    /// The fixture tells definitions apart: reverse KL(q||p), and the forward KL with q_rest taken as 1 - sum q_i
    /// (which cancels when the student puts nearly all its mass on the top-K: the fixture's row 9), are both far
    /// from what the kernel computes.
    func testWrongDefinitionsDifferFromTheFixture() throws {
        let file = try fixture("kd-loss")
        let ours = try runKernel(file, .distillation(.kl, kdWeight: 1), device: CPUDevice(threads: 1))
        let reverse = try XCTUnwrap(file.floats("reverse_kl.losses"))
        let gap = zip(ours.losses, reverse).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(gap, 0.1, "reverse KL would pass the fixture")

        let logits = try XCTUnwrap(file.floats("logits")), ids = try XCTUnwrap(file.int32s("teacher_ids"))
        let logprobs = try XCTUnwrap(file.floats("teacher_logprobs"))
        let vocab = logits.count / ours.losses.count, k = ids.count / ours.losses.count, r = 9
        let row = logits[(r * vocab)..<((r + 1) * vocab)]
        let maximum = row.max() ?? 0
        let sum = row.reduce(Float(0)) { $0 + exp($1 - maximum) }
        var naive: Float = 0, qSum: Float = 0, pSum: Float = 0
        for i in 0..<k {
            let l = logprobs[r * k + i], logQ = logits[r * vocab + Int(ids[r * k + i])] - maximum - log(sum)
            naive += exp(l) * (l - logQ)
            qSum += exp(logQ)
            pSum += exp(l)
        }
        let pRest = max(0, 1 - pSum)
        naive += pRest * (log(pRest) - log(max(1 - qSum, Float.leastNormalMagnitude)))
        let reference = try XCTUnwrap(file.floats("kl.losses"))[r]
        XCTAssertEqual(ours.losses[r], reference, accuracy: 1e-5 * max(1, abs(reference)))
        XCTAssertGreaterThan(abs(naive - reference), 1e-3, "1 - sum q_i would pass row 9 (\(naive) vs \(reference))")
    }

    func testModelLossAndParameterGradientsMatchPyTorch() throws {
        let file = try fixture("kd-model")
        let config = try JSONDecoder().decode(ModelConfig.self, from: Data(try XCTUnwrap(file.metadata["config"]).utf8))
        let batch = Int(file.metadata["batch"] ?? "") ?? 0, seqLen = Int(file.metadata["seq_len"] ?? "") ?? 0
        let k = Int(file.metadata["top_k"] ?? "") ?? 0
        let model = try LlamaModel(config: config, device: CPUDevice(threads: 2))
        var flat = [Float](repeating: .nan, count: model.layout.count)
        for slot in model.layout.slots {
            flat.replaceSubrange(slot.offset..<(slot.offset + slot.count), with: try XCTUnwrap(file.floats(slot.name)))
        }
        try model.setParameters(flat)
        let tokens = try XCTUnwrap(file.int32s("input_ids")), targets = try XCTUnwrap(file.int32s("labels"))
        let teacher = TeacherRows(k: k, ids: try XCTUnwrap(file.int32s("teacher_ids")),
                                  logprobs: try XCTUnwrap(file.floats("teacher_logprobs")))
        let count = targets.filter { $0 >= 0 }.count
        for (name, loss) in try kinds(file) {
            try model.zeroGradients()
            let sums = try model.forwardBackward(tokens: tokens, targets: targets, teacher: teacher, loss: loss,
                                                 batch: batch, seqLen: seqLen, lossScale: 1 / Float(count))
            XCTAssertEqual(sums.targets, count)
            XCTAssertEqual(sums.teacherRows, count - 4, "rows 20..<24 have no teacher")
            let reference = Double(try XCTUnwrap(file.floats("\(name).loss"))[0])
            let mean = sums.loss / Double(count)
            XCTAssertLessThanOrEqual(abs(mean - reference) / reference, 1e-5, "\(name) loss \(mean) vs \(reference)")
            let ceSum = Double(try XCTUnwrap(file.floats("\(name).ce_sum"))[0])
            let kdSum = Double(try XCTUnwrap(file.floats("\(name).kd_sum"))[0])
            XCTAssertLessThanOrEqual(abs(sums.crossEntropy - ceSum) / ceSum, 1e-5, "\(name) ce term")
            XCTAssertLessThanOrEqual(abs(sums.divergence - kdSum) / kdSum, 1e-5, "\(name) kd term")
            let gradients = try model.readGradients()
            var worst = 0.0
            for slot in model.layout.slots {
                let expected = try XCTUnwrap(file.floats("\(name).grad.\(slot.name)"), slot.name)
                let error = relativeError(Array(gradients[slot.offset..<(slot.offset + slot.count)]), expected)
                worst = max(worst, error)
                XCTAssertLessThanOrEqual(error, 1e-5, "\(name): gradient of \(slot.name)")
            }
            print("kd model \(name): loss rel diff \(abs(mean - reference) / reference), worst gradient rel err \(worst)")
        }
    }

    /// Central differences of each kind's mean loss through the whole model, as FiniteDifferenceTests does for
    /// cross-entropy (same step, sampling and 2e-3 bound), on a batch mixing teacher rows, rows without a teacher
    /// and a masked row.
    func testEachKindPassesFiniteDifferences() throws {
        let config = ModelConfig(vocabSize: 40, dim: 16, layers: 2, heads: 4, kvHeads: 2, ffnDim: 24,
                                 maxSeqLen: 16, tieEmbeddings: true)
        let model = try LlamaModel(config: config, device: CPUDevice(threads: 1))
        var rng = SplitMix64(seed: 11)
        var parameters = model.layout.slots.flatMap { slot in
            (0..<slot.count).map { _ in Float(slot.decays ? 0.3 * rng.nextNormal() : 1 + 0.2 * rng.nextNormal()) }
        }
        try model.setParameters(parameters)
        let batch = 2, seqLen = 8, k = 5, n = batch * seqLen
        let tokens = (0..<n).map { _ in Int32(rng.next() % 40) }
        var targets = (0..<n).map { _ in Int32(rng.next() % 40) }
        targets[3] = -1
        var teacher = TeacherRows(k: k, rows: n)
        for r in 0..<n where r % 7 != 6 {
            // Distinct ids, and log-probs of a random distribution's top-K (mass below 1: a real rest bucket).
            var ids: [Int32] = []
            while ids.count < k {
                let id = Int32(rng.next() % 40)
                if !ids.contains(id) { ids.append(id) }
            }
            let weights = (0..<k).map { _ in exp(1.5 * rng.nextNormal()) }
            let total = weights.reduce(0, +) / 0.8
            for i in 0..<k {
                teacher.ids[r * k + i] = ids[i]
                teacher.logprobs[r * k + i] = Float(log(weights[i] / total))
            }
        }
        let count = targets.filter { $0 >= 0 }.count
        for loss: TokenLoss in [.distillation(.kl, kdWeight: 1), .distillation(.tvd, kdWeight: 1),
                                .distillation(.kl, kdWeight: 0.4)] {
            func value() throws -> Double {
                try model.forwardBackward(tokens: tokens, targets: targets, teacher: teacher, loss: loss,
                                          batch: batch, seqLen: seqLen, lossScale: 0).loss / Double(count)
            }
            try model.zeroGradients()
            try model.forwardBackward(tokens: tokens, targets: targets, teacher: teacher, loss: loss, batch: batch,
                                      seqLen: seqLen, lossScale: 1 / Float(count))
            let analytic = try model.readGradients()
            var worst = 0.0
            for (name, numeric, exact) in try sampledCentralDifferences(model, parameters: &parameters, analytic: analytic,
                                                                        rng: &rng, value: value) {
                worst = max(worst, relativeError(numeric, exact))
                XCTAssertLessThanOrEqual(relativeError(numeric, exact), 2e-3, "\(loss) \(name): numeric \(numeric) analytic \(exact)")
            }
            print("kd finite differences \(loss): worst rel err \(worst)")
        }
    }

    /// An absent teacher entry (id -1, what a subset head cannot score) is mass in the rest bucket: a row with
    /// absent entries gives exactly what the same row gives with only its present entries (a smaller K, the
    /// semantics the PyTorch fixtures pin), and a row with none present is the cross-entropy alone.
    func testAbsentTeacherEntriesJoinTheRestBucket() throws {
        let device = CPUDevice(threads: 1)
        let vocab = 23
        var random = SplitMix64(seed: 0xAB5E)
        func run(_ logits: [Float], target: Int32, ids: [Int32], logprobs: [Float], divergence: Divergence,
                 weight: Float) throws -> [Float] {
            let dLogits = try device.upload(logits), losses = try device.allocate(Float.self, count: 1)
            let ce = try device.allocate(Float.self, count: 1), kd = try device.allocate(Float.self, count: 1)
            try device.distillationLossForwardBackward(
                logits: dLogits, targets: try device.upload([target]), teacherIds: try device.upload(ids),
                teacherLogprobs: try device.upload(logprobs), losses: losses, ceLosses: ce, kdLosses: kd, rows: 1,
                vocab: vocab, topK: ids.count, divergence: divergence, kdWeight: weight, lossScale: 0.5)
            return try device.download(losses, count: 1) + device.download(ce, count: 1) + device.download(kd, count: 1)
                + device.download(dLogits, count: vocab)
        }
        for (divergence, weight) in [(Divergence.kl, Float(1)), (.tvd, 1), (.kl, 0.4)] {
            let logits = (0..<vocab).map { _ in Float.random(in: -3...3, using: &random) }
            let ids: [Int32] = [4, -1, 9, 17, -1], logprobs: [Float] = [-0.9, -1.6, -2.2, -2.9, -3.1]
            let present = ids.indices.filter { ids[$0] >= 0 }
            let partial = try run(logits, target: 9, ids: ids, logprobs: logprobs, divergence: divergence, weight: weight)
            let compact = try run(logits, target: 9, ids: present.map { ids[$0] }, logprobs: present.map { logprobs[$0] },
                                  divergence: divergence, weight: weight)
            XCTAssertEqual(partial, compact, "\(divergence) \(weight): absent entries against the present ones alone")
            XCTAssertGreaterThan(partial[2], 0, "a divergence was taken")
            let none = try run(logits, target: 9, ids: [-1, -1, -1], logprobs: [-1, -2, -3], divergence: divergence,
                               weight: weight)
            XCTAssertEqual(none[2], 0, "no teacher: no divergence")
            XCTAssertEqual(none[0], none[1], "no teacher: the cross-entropy alone")
        }
    }

    /// Bad teacher rows are refused before anything is written.
    func testBadTeacherRowsAreRefusedUntouched() throws {
        let device = CPUDevice(threads: 1)
        let vocab = 11, k = 3
        let logits = (0..<vocab).map { Float($0) * 0.1 }
        for (ids, logprobs, target, expected) in [
            ([Int32(1), 2, 11], [Float(-1), -2, -3], Int32(0), "nor in the vocabulary of 11"),
            ([Int32(1), 2, 1], [Float(-1), -2, -3], Int32(0), "appears at 0 and 2"),
            ([Int32(-2), 2, 3], [Float(-1), -2, -3], Int32(0), "neither -1 (absent) nor in the vocabulary"),
            ([Int32(1), 2, 3], [Float(-1), .nan, -3], Int32(0), "not a log-probability"),
            ([Int32(1), 2, 3], [Float(-1), 0.5, -3], Int32(0), "not a log-probability"),
            ([Int32(1), 2, 3], [Float(-1), -2, -3], Int32(11), "target id 11"),
        ] {
            let dLogits = try device.upload(logits), losses = try device.upload([Float(7)])
            let ce = try device.allocate(Float.self, count: 1), kd = try device.allocate(Float.self, count: 1)
            XCTAssertThrowsError(try device.distillationLossForwardBackward(
                logits: dLogits, targets: try device.upload([target]), teacherIds: try device.upload(ids),
                teacherLogprobs: try device.upload(logprobs), losses: losses, ceLosses: ce, kdLosses: kd, rows: 1,
                vocab: vocab, topK: k, divergence: .kl, kdWeight: 1, lossScale: 1)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
            XCTAssertEqual(try device.download(dLogits, count: vocab), logits)
            XCTAssertEqual(try device.download(losses, count: 1), [7])
        }
    }
}

/// What the distillation loss costs next to the cross-entropy it replaces, at SmolLM2's vocabulary and one LM-head
/// chunk of rows: one more read-only pass over each row (the complement's sum) and K scattered reads and writes.
/// Opt-in, in release: `SWIFTDRAFT_KD_BENCH=1 swift test -c release --filter DistillationLossCost`. Single-threaded,
/// timed in the thread's CPU time (steadier than wall time on a shared machine), median of 9 interleaved runs; it
/// prints both and asserts the distillation loss stays within 2x the cross-entropy.
final class DistillationLossCostTests: XCTestCase {
    func testCostAgainstCrossEntropy() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SWIFTDRAFT_KD_BENCH"] == "1",
                          "set SWIFTDRAFT_KD_BENCH=1 (and -c release) to time the distillation loss")
        let device = CPUDevice(threads: 1)
        let rows = 170, vocab = 49_152, k = 16
        var rng = SplitMix64(seed: 3)
        let logits = (0..<(rows * vocab)).map { _ in Float(3 * rng.nextNormal()) }
        let targets = (0..<rows).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var ids = [Int32](), logprobs = [Float]()
        for _ in 0..<rows {
            var row: [Int32] = []
            while row.count < k {
                let id = Int32(rng.next() % UInt64(vocab))
                if !row.contains(id) { row.append(id) }
            }
            ids += row
            logprobs += (0..<k).map { Float(-1 - 0.3 * Double($0)) }
        }
        let dLogits = try device.upload(logits), dTargets = try device.upload(targets)
        let dIds = try device.upload(ids), dLogprobs = try device.upload(logprobs)
        let losses = try device.allocate(Float.self, count: rows), ce = try device.allocate(Float.self, count: rows)
        let kd = try device.allocate(Float.self, count: rows)
        func cpuNow() -> Double {
            var spec = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
            return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
        }
        func time(_ body: () throws -> Void) throws -> Double {
            try logits.withUnsafeBufferPointer { try device.copyToDevice($0, dLogits) }
            let start = cpuNow()
            try body()
            return cpuNow() - start
        }
        var crossEntropy: [Double] = [], distillation: [Double] = []
        for _ in 0..<9 {
            crossEntropy.append(try time {
                try device.crossEntropyForwardBackward(logits: dLogits, targets: dTargets, losses: losses, rows: rows,
                                                       vocab: vocab, lossScale: 1)
            })
            distillation.append(try time {
                try device.distillationLossForwardBackward(logits: dLogits, targets: dTargets, teacherIds: dIds,
                                                           teacherLogprobs: dLogprobs, losses: losses, ceLosses: ce,
                                                           kdLosses: kd, rows: rows, vocab: vocab, topK: k,
                                                           divergence: .kl, kdWeight: 0.5, lossScale: 1)
            })
        }
        let ceMedian = crossEntropy.sorted()[4], kdMedian = distillation.sorted()[4]
        print(String(format: "kd cost: %d rows x %d vocab, top-%d, 1 thread: cross-entropy %.2f ms, ce_kl %.2f ms (%.2fx)",
                     rows, vocab, k, ceMedian * 1e3, kdMedian * 1e3, kdMedian / ceMedian))
        XCTAssertLessThanOrEqual(kdMedian, 2 * ceMedian)
    }
}
