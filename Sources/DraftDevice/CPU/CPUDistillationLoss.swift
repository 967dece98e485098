import Foundation

/// The fused token-level distillation loss on the CPU (definitions in `Device.distillationLossForwardBackward`).
///
/// One row at a time, in three passes over the vocabulary as cross-entropy takes: the row max, the exponentials
/// (with the top-K entries then set aside, so one more sum gives the complement's mass directly), and the scale
/// into the gradient. The K teacher entries and the target are then written on their own.
extension CPUDevice {
    public func distillationLossForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                                teacherIds: DevicePointer<Int32>,
                                                teacherLogprobs: DevicePointer<Float>, losses: DevicePointer<Float>,
                                                ceLosses: DevicePointer<Float>, kdLosses: DevicePointer<Float>,
                                                rows: Int, vocab: Int, topK: Int, divergence: Divergence,
                                                kdWeight: Float, lossScale: Float) throws {
        guard topK > 0, kdWeight >= 0, kdWeight <= 1 else {
            throw DeviceError(.invalidArgument, "distillation loss: topK must be positive and kdWeight in [0, 1], got \(topK) and \(kdWeight)")
        }
        let logits = host(logits), targets = host(targets), ids = host(teacherIds), logprobs = host(teacherLogprobs)
        let losses = host(losses), ceLosses = host(ceLosses), kdLosses = host(kdLosses)
        // Checked up front so bad input leaves every row untouched.
        for r in 0..<rows {
            if let problem = DistillationRow.problem(target: targets[r], ids: ids + r * topK,
                                                     logprobs: logprobs + r * topK, topK: topK, vocab: vocab) {
                throw DeviceError(.invalidArgument, "distillation loss: row \(r): \(problem)")
            }
        }
        let weights = DistillationRow.Weights(kd: Double(kdWeight))
        parallelChunks(rows, threads: threads, grain: 1) { _, range in
            var teacher = [DistillationRow.Entry](repeating: .init(), count: topK)
            // A row's present entries (id >= 0): their ids and log-probs, compacted; absent ones (-1) are mass in the
            // rest bucket.
            var presentIds = [Int32](repeating: 0, count: topK), presentLogprobs = [Float](repeating: 0, count: topK)
            for r in range {
                let row = logits + r * vocab
                let target = Int(targets[r])
                guard target >= 0 else {
                    losses[r] = 0; ceLosses[r] = 0; kdLosses[r] = 0
                    row.update(repeating: 0, count: vocab)
                    continue
                }
                var present = 0
                for i in 0..<topK where ids[r * topK + i] >= 0 {
                    presentIds[present] = ids[r * topK + i]
                    presentLogprobs[present] = logprobs[r * topK + i]
                    present += 1
                }
                let targetLogit = row[target]
                let maximum = rowMax(row, length: vocab)
                let hasTeacher = present > 0
                for i in 0..<present { teacher[i].logit = row[Int(presentIds[i])] }
                let sum = expInPlace(row, length: vocab, shift: maximum)
                let logSum = Double(log(sum)) + Double(maximum)
                let ce = logSum - Double(targetLogit)
                guard hasTeacher else {
                    losses[r] = Float(ce); ceLosses[r] = Float(ce); kdLosses[r] = 0
                    scaleInPlace(row, length: vocab, by: lossScale / sum)
                    row[target] -= lossScale
                    continue
                }
                for i in 0..<present {
                    let id = Int(presentIds[i])
                    teacher[i].q = Double(row[id] / sum)
                    row[id] = 0
                }
                let complement = Double(rowSum(row, length: vocab) / sum)
                let terms = presentLogprobs.withUnsafeBufferPointer { rowLogprobs in
                    teacher.withUnsafeMutableBufferPointer { entries in
                        DistillationRow.terms(teacher: entries.prefix(present), logprobs: rowLogprobs.baseAddress!,
                                              logSum: logSum, complement: complement, divergence: divergence,
                                              weights: weights)
                    }
                }
                losses[r] = Float(weights.ce * ce + weights.kd * terms.kd)
                ceLosses[r] = Float(ce)
                kdLosses[r] = Float(terms.kd)
                scaleInPlace(row, length: vocab, by: lossScale * Float(terms.complementFactor) / sum)
                for i in 0..<present { row[Int(presentIds[i])] = lossScale * Float(teacher[i].gradient) }
                row[target] -= lossScale * Float(weights.ce)
            }
        }
    }
}

/// The per-row scalar part of the distillation loss: the K teacher buckets and the rest, in double precision.
enum DistillationRow {
    /// `q_rest`'s floor, so `log q_rest` stays finite when the student puts no mass outside the top-K.
    static let tinyMass = Double(Float.leastNormalMagnitude)
    /// How far above 0 a teacher log-prob may round before it is not a log-probability.
    static let logprobSlack: Float = 1e-3

    struct Weights {
        let kd: Double
        var ce: Double { 1 - kd }
    }

    struct Entry {
        /// The student's logit at the teacher id (read before the exponentials overwrite it).
        var logit: Float = 0
        /// `q_i`.
        var q: Double = 0
        /// `lossScale`-free `d(loss)/d(logit_i)` without the target's `-ce weight`.
        var gradient: Double = 0
    }

    /// What is wrong with a row's inputs, or nil.
    static func problem(target: Int32, ids: UnsafePointer<Int32>, logprobs: UnsafePointer<Float>, topK: Int,
                        vocab: Int) -> String? {
        if Int(target) >= vocab { return "target id \(target) is outside the vocabulary of \(vocab)" }
        for i in 0..<topK {
            let id = ids[i]
            if id == -1 { continue }  // absent: its teacher mass is in the rest bucket
            if id < 0 || Int(id) >= vocab {
                return "teacher id \(id) at \(i) is neither -1 (absent) nor in the vocabulary of \(vocab)"
            }
            for j in 0..<i where ids[j] == id { return "teacher id \(id) appears at \(j) and \(i)" }
            let l = logprobs[i]
            if l.isNaN || l > logprobSlack { return "teacher log-prob \(l) at \(i) is not a log-probability" }
        }
        return nil
    }

    /// The divergence and its gradient factors, given each entry's `logit` and `q`, `logSum` the row's log-sum-exp
    /// and `complement` the student's mass outside the top-K. Fills each entry's `gradient` and returns `kd` and
    /// `complementFactor`, the gradient of an entry outside the top-K divided by its `q_j` (the target's `-ce weight`
    /// aside).
    static func terms(teacher: Slice<UnsafeMutableBufferPointer<Entry>>, logprobs: UnsafePointer<Float>,
                      logSum: Double, complement: Double, divergence: Divergence,
                      weights: Weights) -> (kd: Double, complementFactor: Double) {
        var teacher = teacher
        let k = teacher.count
        var pSum = 0.0
        for i in 0..<k { pSum += exp(Double(logprobs[i])) }
        let pRest = max(0, 1 - pSum)
        let live = complement > tinyMass
        let qRest = live ? complement : tinyMass
        // h_i = q_i dkd/dq_i, and gRest = dkd/dq_rest (0 where the floor holds q_rest).
        var kd = 0.0, hSum = 0.0, gRest = 0.0
        switch divergence {
        case .kl:
            for i in 0..<k {
                let l = Double(logprobs[i]), p = exp(l)
                if p > 0 { kd += p * (l - (Double(teacher[i].logit) - logSum)) }
                teacher[i].gradient = -p
                hSum -= p
            }
            if pRest > 0 { kd += pRest * (log(pRest) - log(qRest)) }
            gRest = live ? -pRest / qRest : 0
        case .tvd:
            var absSum = 0.0
            for i in 0..<k {
                let p = exp(Double(logprobs[i])), q = teacher[i].q
                absSum += abs(p - q)
                let h = q * 0.5 * sign(q - p)
                teacher[i].gradient = h
                hSum += h
            }
            kd = 0.5 * (absSum + abs(pRest - qRest))
            gRest = live ? 0.5 * sign(qRest - pRest) : 0
        }
        // d(loss)/d(logit_j) = q_j (G_j - sum_m q_m G_m), G the gradient with respect to q.
        let gq = weights.kd * (hSum + gRest * complement) - weights.ce
        for i in 0..<k { teacher[i].gradient = weights.kd * teacher[i].gradient - teacher[i].q * gq }
        return (kd, weights.kd * gRest - gq)
    }

    /// -1, 0 or 1, as PyTorch's `abs` backward takes it.
    @inline(__always)
    static func sign(_ x: Double) -> Double { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}
