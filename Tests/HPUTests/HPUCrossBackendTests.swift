import DraftDevice
import Foundation
import XCTest

/// The same kernel calls on HPUDevice (through the stub) and on CPUDevice, on the same random inputs, at shapes of
/// the bench model's order: outputs agree to rel diff <= 1e-5. Together with the double-precision references this
/// pins the stub to the CPU backend's semantics (overwrite vs accumulate, ignored targets, AdamW's form).
final class HPUCrossBackendTests: XCTestCase {
    private var hpu: HPUDevice!
    private let cpu = CPUDevice(threads: 2)

    override func setUpWithError() throws {
        hpu = try HPUDevice(pluginPath: try builtStubPath(), module: 0)
    }

    override func tearDown() {
        hpu = nil
    }

    /// Runs `body` on both devices with a generator seeded identically, and compares every array it returns.
    private func compare(_ what: String, seed: UInt64, file: StaticString = #filePath, line: UInt = #line,
                         _ body: (Device, inout SplitMix64) throws -> [[Float]]) throws {
        var cpuRandom = SplitMix64(seed: seed), hpuRandom = SplitMix64(seed: seed)
        let expected = try body(cpu, &cpuRandom)
        let actual = try body(hpu, &hpuRandom)
        XCTAssertEqual(expected.count, actual.count, file: file, line: line)
        for (index, (e, a)) in zip(expected, actual).enumerated() {
            assertClose(a, e.map(Double.init), "\(what) output \(index) (hpu vs cpu)", file: file, line: line)
        }
    }

    func testAttentionAndRope() throws {
        let (batch, seqLen, heads, kvHeads, headDim) = (2, 130, 4, 2, 32)
        let qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim
        try compare("attention", seed: 11) { device, random in
            let half = headDim / 2
            let cosTable = (0..<(seqLen * half)).map { Float(cos(Double($0 / half) * pow(1e-4, Double($0 % half) / Double(half)))) }
            let sinTable = (0..<(seqLen * half)).map { Float(sin(Double($0 / half) * pow(1e-4, Double($0 % half) / Double(half)))) }
            let q = try device.upload(random.floats(qCount)), k = try device.upload(random.floats(kvCount))
            let v = try device.upload(random.floats(kvCount))
            let c = try device.upload(cosTable), s = try device.upload(sinTable)
            try device.rotaryEmbedding(x: q, cos: c, sin: s, batch: batch, seqLen: seqLen, heads: heads,
                                       headDim: headDim, inverse: false)
            try device.rotaryEmbedding(x: k, cos: c, sin: s, batch: batch, seqLen: seqLen, heads: kvHeads,
                                       headDim: headDim, inverse: false)
            let out = try device.allocate(Float.self, count: qCount)
            let lse = try device.allocate(Float.self, count: batch * heads * seqLen)
            try device.attentionForward(q: q, k: k, v: v, out: out, lse: lse, batch: batch, seqLen: seqLen,
                                        heads: heads, kvHeads: kvHeads, headDim: headDim)
            let dOut = try device.upload(random.floats(qCount))
            let dQ = try device.upload(random.floats(qCount)), dK = try device.upload(random.floats(kvCount))
            let dV = try device.upload(random.floats(kvCount))
            try device.attentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, lse: lse, dQ: dQ, dK: dK, dV: dV,
                                         batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads,
                                         headDim: headDim)
            try device.rotaryEmbedding(x: dQ, cos: c, sin: s, batch: batch, seqLen: seqLen, heads: heads,
                                       headDim: headDim, inverse: true)
            return [try device.download(q, count: qCount), try device.download(out, count: qCount),
                    try device.download(lse, count: batch * heads * seqLen), try device.download(dQ, count: qCount),
                    try device.download(dK, count: kvCount), try device.download(dV, count: kvCount)]
        }
    }

    func testNormMLPAndEmbedding() throws {
        let (rows, dim, ffn, vocab) = (96, 128, 344, 300)
        try compare("norm/mlp/embedding", seed: 12) { device, random in
            let tokens = try device.upload((0..<rows).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) })
            let table = try device.upload(random.floats(vocab * dim))
            let x = try device.allocate(Float.self, count: rows * dim)
            try device.embeddingForward(tokens: tokens, table: table, out: x, count: rows, dim: dim, vocab: vocab)
            let weight = try device.upload(random.floats(dim, in: 0.5...1.5))
            let normed = try device.allocate(Float.self, count: rows * dim)
            let rstd = try device.allocate(Float.self, count: rows)
            try device.rmsNormForward(x: x, weight: weight, out: normed, rstd: rstd, rows: rows, dim: dim, eps: 1e-5)
            let w1 = try device.upload(random.floats(dim * 2 * ffn, in: -0.1...0.1))
            let hidden = try device.allocate(Float.self, count: rows * 2 * ffn)
            try device.gemm(transA: false, transB: false, m: rows, n: 2 * ffn, k: dim, alpha: 1, a: normed, lda: dim,
                            b: w1, ldb: 2 * ffn, beta: 0, c: hidden, ldc: 2 * ffn)
            let gate = try device.allocate(Float.self, count: rows * ffn), up = try device.allocate(Float.self, count: rows * ffn)
            for r in 0..<rows {
                try device.copy(hidden.advanced(by: r * 2 * ffn), gate.advanced(by: r * ffn), count: ffn)
                try device.copy(hidden.advanced(by: r * 2 * ffn + ffn), up.advanced(by: r * ffn), count: ffn)
            }
            let act = try device.allocate(Float.self, count: rows * ffn)
            try device.swigluForward(gate: gate, up: up, out: act, count: rows * ffn)
            let dAct = try device.upload(random.floats(rows * ffn))
            let dGate = try device.allocate(Float.self, count: rows * ffn), dUp = try device.allocate(Float.self, count: rows * ffn)
            try device.swigluBackward(dOut: dAct, gate: gate, up: up, dGate: dGate, dUp: dUp, count: rows * ffn)
            let dNormed = try device.upload(random.floats(rows * dim))
            let dX = try device.upload(random.floats(rows * dim)), dWeight = try device.upload(random.floats(dim))
            try device.rmsNormBackward(dOut: dNormed, x: x, weight: weight, rstd: rstd, dX: dX, dWeight: dWeight,
                                       rows: rows, dim: dim)
            let dTable = try device.allocate(Float.self, count: vocab * dim)
            try device.embeddingBackward(tokens: tokens, dOut: dX, dTable: dTable, count: rows, dim: dim, vocab: vocab)
            try device.add(dX, x, dX, count: rows * dim)
            try device.axpy(-0.5, x, dX, count: rows * dim)
            try device.scale(dX, count: rows * dim, by: 0.25)
            let norm = try device.allocate(Float.self, count: 1)
            try device.sumOfSquares(dX, count: rows * dim, into: norm)
            return [try device.download(normed, count: rows * dim), try device.download(rstd, count: rows),
                    try device.download(act, count: rows * ffn), try device.download(dGate, count: rows * ffn),
                    try device.download(dUp, count: rows * ffn), try device.download(dX, count: rows * dim),
                    try device.download(dWeight, count: dim), try device.download(dTable, count: vocab * dim),
                    try device.download(norm, count: 1)]
        }
    }

    func testLossAndOptimizer() throws {
        let (rows, vocab, count) = (64, 32064, 100_003)
        try compare("cross-entropy/adamw", seed: 13) { device, random in
            let logits = try device.upload(random.floats(rows * vocab, in: -6...6))
            var targets = (0..<rows).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) }
            targets[5] = -1
            let losses = try device.allocate(Float.self, count: rows)
            try device.crossEntropyForwardBackward(logits: logits, targets: try device.upload(targets), losses: losses,
                                                   rows: rows, vocab: vocab, lossScale: 1 / Float(rows))
            let params = try device.upload(random.floats(count))
            let m = try device.allocate(Float.self, count: count), v = try device.allocate(Float.self, count: count)
            for step in 1...3 {
                let grads = try device.upload(random.floats(count, in: -0.01...0.01))
                try device.adamw(params: params, grads: grads, m: m, v: v, count: count, lr: 6e-4, beta1: 0.9,
                                 beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: step)
            }
            return [try device.download(losses, count: rows), try device.download(logits, count: rows * vocab),
                    try device.download(params, count: count), try device.download(m, count: count),
                    try device.download(v, count: count)]
        }
    }

    /// The distillation loss at a SmolLM2-sized vocabulary, each divergence and a mixed weight, on rows with a
    /// teacher, without one, with absent entries, masked, with the target inside the top-K and with the student's
    /// mass on the top-K.
    func testDistillationLoss() throws {
        let (rows, vocab, k) = (24, 49_152, 16)
        for (divergence, weight) in [(Divergence.kl, Float(1)), (.tvd, 1), (.kl, 0.5)] {
            try compare("distillation \(divergence) \(weight)", seed: 15) { device, random in
                var logits = random.floats(rows * vocab, in: -6...6)
                var targets = (0..<rows).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) }
                var ids = [Int32](), logprobs = [Float]()
                for _ in 0..<rows {
                    var row = Set<Int32>()
                    while row.count < k { row.insert(Int32.random(in: 0..<Int32(vocab), using: &random)) }
                    ids += row.sorted()
                    let weights = (0..<k).map { _ in Double.random(in: 0.1...1, using: &random) }
                    let total = weights.reduce(0, +) / 0.9
                    logprobs += weights.map { Float(log($0 / total)) }
                }
                targets[3] = -1
                for i in 0..<k { ids[5 * k + i] = -1 }
                targets[7] = ids[7 * k + 2]
                for i in 0..<k { logits[9 * vocab + Int(ids[9 * k + i])] += 30 }
                // Absent entries (ABI 1.3), as a subset head leaves them: a few in row 11, all but one in row 13.
                for i in [0, 5, 15] { ids[11 * k + i] = -1 }
                for i in 1..<k { ids[13 * k + i] = -1 }
                let dLogits = try device.upload(logits)
                let losses = try device.allocate(Float.self, count: rows)
                let ce = try device.allocate(Float.self, count: rows), kd = try device.allocate(Float.self, count: rows)
                try device.distillationLossForwardBackward(
                    logits: dLogits, targets: try device.upload(targets), teacherIds: try device.upload(ids),
                    teacherLogprobs: try device.upload(logprobs), losses: losses, ceLosses: ce, kdLosses: kd,
                    rows: rows, vocab: vocab, topK: k, divergence: divergence, kdWeight: weight,
                    lossScale: 1 / Float(rows - 1))
                return [try device.download(losses, count: rows), try device.download(ce, count: rows),
                        try device.download(kd, count: rows), try device.download(dLogits, count: rows * vocab)]
            }
        }
    }

    /// The stub validates the distillation loss's teacher rows and params as the CPU backend does: refused, nothing
    /// written.
    func testDistillationLossRefusesBadInput() throws {
        let vocab = 11, k = 3
        let logits = (0..<vocab).map { Float($0) * 0.1 }
        for (ids, logprobs, target, weight, expected) in [
            ([Int32(1), 2, 11], [Float(-1), -2, -3], Int32(0), Float(1), "nor in the vocabulary of 11"),
            ([Int32(1), 2, 1], [Float(-1), -2, -3], Int32(0), 1, "appears at 0 and 2"),
            ([Int32(-2), 2, 3], [Float(-1), -2, -3], Int32(0), 1, "neither -1 (absent) nor in the vocabulary"),
            ([Int32(1), 2, 3], [Float(-1), .nan, -3], Int32(0), 1, "not a log-probability"),
            ([Int32(1), 2, 3], [Float(-1), -2, -3], Int32(11), 1, "target 11"),
            ([Int32(1), 2, 3], [Float(-1), -2, -3], Int32(0), 1.5, "kdWeight must be in [0, 1]"),
        ] {
            let dLogits = try hpu.upload(logits), losses = try hpu.upload([Float(7)])
            let ce = try hpu.allocate(Float.self, count: 1), kd = try hpu.allocate(Float.self, count: 1)
            XCTAssertThrowsError(try hpu.distillationLossForwardBackward(
                logits: dLogits, targets: try hpu.upload([target]), teacherIds: try hpu.upload(ids),
                teacherLogprobs: try hpu.upload(logprobs), losses: losses, ceLosses: ce, kdLosses: kd, rows: 1,
                vocab: vocab, topK: k, divergence: .kl, kdWeight: weight, lossScale: 1)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
            XCTAssertEqual(try hpu.download(dLogits, count: vocab), logits)
            XCTAssertEqual(try hpu.download(losses, count: 1), [7])
        }
        // A teacher tensor shorter than rows * topK is a rejected address range, before any row is read.
        let short = try hpu.upload([Int32(1), 2])
        let dLogits = try hpu.upload(logits), losses = try hpu.allocate(Float.self, count: 1)
        XCTAssertThrowsError(try hpu.distillationLossForwardBackward(
            logits: dLogits, targets: try hpu.upload([Int32(0)]), teacherIds: short,
            teacherLogprobs: try hpu.upload([Float(-1), -2, -3]), losses: losses, ceLosses: losses, kdLosses: losses,
            rows: 1, vocab: vocab, topK: k, divergence: .kl, kdWeight: 1, lossScale: 1))
    }

    /// The decode kernels at SmolLM2-135M's attention shape: a batched step of rows from 6 sequences at assorted
    /// positions (a prefill block and single decode rows), rotary on q and k, both caches written, attention over
    /// them, and a bias on q.
    func testDecodeKernels() throws {
        let (heads, kvHeads, headDim, capacity, slotCount) = (9, 3, 64, 300, 6)
        let qWidth = heads * headDim, kvWidth = kvHeads * headDim, cacheCount = slotCount * capacity * kvWidth
        try compare("decode kernels", seed: 14) { device, random in
            // Slot 4 prefills positions 0..<40; the others decode one row each, slot 1 at the cache's last position.
            var slots: [Int32] = [0, 1, 2, 3, 5], positions: [Int32] = [17, Int32(capacity - 1), 0, 120, 299]
            slots += [Int32](repeating: 4, count: 40)
            positions += (0..<40).map(Int32.init)
            let rows = slots.count
            let tables = DecodeReference.rotaryTables(positions: capacity, headDim: headDim)
            let cosTable = try device.upload(tables.cos), sinTable = try device.upload(tables.sin)
            let dSlots = try device.upload(slots), dPositions = try device.upload(positions)
            // Caches full of earlier tokens, so every row attends over real history.
            let kCache = try device.upload(random.floats(cacheCount, in: -2...2))
            let vCache = try device.upload(random.floats(cacheCount))
            let q = try device.upload(random.floats(rows * qWidth)), k = try device.upload(random.floats(rows * kvWidth))
            let v = try device.upload(random.floats(rows * kvWidth))
            try device.addBias(x: q, bias: try device.upload(random.floats(qWidth, in: -0.5...0.5)), rows: rows,
                               width: qWidth)
            try device.rotaryEmbedding(x: q, positions: dPositions, cos: cosTable, sin: sinTable, rows: rows,
                                       heads: heads, headDim: headDim, maxPositions: capacity)
            try device.rotaryEmbedding(x: k, positions: dPositions, cos: cosTable, sin: sinTable, rows: rows,
                                       heads: kvHeads, headDim: headDim, maxPositions: capacity)
            try device.kvCacheWrite(rows: k, cache: kCache, slots: dSlots, positions: dPositions, count: rows,
                                    width: kvWidth, capacity: capacity, slotCount: slotCount)
            try device.kvCacheWrite(rows: v, cache: vCache, slots: dSlots, positions: dPositions, count: rows,
                                    width: kvWidth, capacity: capacity, slotCount: slotCount)
            let out = try device.allocate(Float.self, count: rows * qWidth)
            try device.attentionOverCache(q: q, kCache: kCache, vCache: vCache, out: out, slots: dSlots,
                                          positions: dPositions, rows: rows, heads: heads, kvHeads: kvHeads,
                                          headDim: headDim, capacity: capacity, slotCount: slotCount)
            return [try device.download(q, count: rows * qWidth), try device.download(kCache, count: cacheCount),
                    try device.download(vCache, count: cacheCount), try device.download(out, count: rows * qWidth)]
        }
    }
}
