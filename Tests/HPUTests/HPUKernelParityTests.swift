import DraftDevice
import Foundation
import XCTest

/// Each HPUDevice kernel, run through the stub plugin, against a plain Swift reference computed here in double
/// precision on random data: relative difference (max abs error over max abs reference) <= 1e-5.
final class HPUKernelParityTests: XCTestCase {
    private var device: HPUDevice!
    private var random = SplitMix64(seed: 0x5EED_0F_D8AF7)

    override func setUpWithError() throws {
        device = try HPUDevice(pluginPath: try builtStubPath(), module: 0)
    }

    override func tearDown() {
        device = nil
    }

    private func upload(_ values: [Float]) throws -> DevicePointer<Float> { try device.upload(values) }
    private func download(_ pointer: DevicePointer<Float>, _ count: Int) throws -> [Float] {
        try device.download(pointer, count: count)
    }

    func testElementwiseAndReductions() throws {
        let n = 10_003
        let x = random.floats(n), y = random.floats(n)
        let dx = try upload(x), dy = try upload(y)

        try device.axpy(0.37, dx, dy, count: n)
        assertClose(try download(dy, n), zip(x, y).map { 0.37 * Double($0) + Double($1) }, "axpy")
        try device.scale(dy, count: n, by: -1.25)
        assertClose(try download(dy, n), zip(x, y).map { -1.25 * (0.37 * Double($0) + Double($1)) }, "scale")

        let out = try device.allocate(Float.self, count: n)
        try device.add(dx, dx, out, count: n)
        assertClose(try download(out, n), x.map { 2 * Double($0) }, "add")
        try device.add(out, dx, out, count: n) // out aliases a
        assertClose(try download(out, n), x.map { 3 * Double($0) }, "add aliased")

        let result = try device.allocate(Float.self, count: 1)
        try device.sumOfSquares(dx, count: n, into: result)
        assertClose(try download(result, 1), [x.reduce(0.0) { $0 + Double($1) * Double($1) }], "sumOfSquares")

        try device.fill(out, count: n, value: 0.5)
        XCTAssertEqual(try download(out, n), [Float](repeating: 0.5, count: n))
        try device.fill(out, count: n, value: 0)
        XCTAssertEqual(try download(out, n), [Float](repeating: 0, count: n))

        try device.copy(dx, out, count: n)
        XCTAssertEqual(try download(out, n), x)
    }

    func testGemmAllTranspositions() throws {
        let m = 37, n = 29, k = 45
        for transA in [false, true] {
            for transB in [false, true] {
                // Leading dimensions wider than the rows, to exercise the extent computation.
                let aRows = transA ? k : m, aCols = transA ? m : k, lda = aCols + 3
                let bRows = transB ? n : k, bCols = transB ? k : n, ldb = bCols + 2
                let ldc = n + 5
                let a = random.floats(aRows * lda), b = random.floats(bRows * ldb), c = random.floats(m * ldc)
                let da = try upload(a), db = try upload(b), dc = try upload(c)
                try device.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.7, a: da, lda: lda,
                                b: db, ldb: ldb, beta: 0.3, c: dc, ldc: ldc)
                var expected = c.map(Double.init)
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k {
                            let av = transA ? a[p * lda + i] : a[i * lda + p]
                            let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                            sum += Double(av) * Double(bv)
                        }
                        expected[i * ldc + j] = 0.7 * sum + 0.3 * Double(c[i * ldc + j])
                    }
                }
                assertClose(try download(dc, m * ldc), expected, "gemm transA=\(transA) transB=\(transB)")
            }
        }
    }

    func testEmbedding() throws {
        let vocab = 50, dim = 24, count = 40
        let tokens = (0..<count).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) } + [3, 3, 3]
        let table = random.floats(vocab * dim)
        let dTokens = try device.upload(tokens), dTable = try upload(table)
        let out = try device.allocate(Float.self, count: tokens.count * dim)
        try device.embeddingForward(tokens: dTokens, table: dTable, out: out, count: tokens.count, dim: dim,
                                    vocab: vocab)
        let expected = tokens.flatMap { table[Int($0) * dim..<(Int($0) + 1) * dim].map(Double.init) }
        assertClose(try download(out, tokens.count * dim), expected, "embedding forward")

        let dOut = random.floats(tokens.count * dim)
        let gradient = random.floats(vocab * dim) // accumulates into existing values
        let dGradient = try upload(gradient)
        try device.embeddingBackward(tokens: dTokens, dOut: try upload(dOut), dTable: dGradient, count: tokens.count,
                                     dim: dim, vocab: vocab)
        var expectedGradient = gradient.map(Double.init)
        for (i, token) in tokens.enumerated() {
            for c in 0..<dim { expectedGradient[Int(token) * dim + c] += Double(dOut[i * dim + c]) }
        }
        assertClose(try download(dGradient, vocab * dim), expectedGradient, "embedding backward")

        let bad = try device.upload([Int32(vocab)])
        XCTAssertThrowsError(try device.embeddingForward(tokens: bad, table: dTable, out: out, count: 1, dim: dim,
                                                         vocab: vocab)) { error in
            let error = error as? DeviceError
            XCTAssertEqual(error?.kind, .invalidArgument)
            XCTAssertTrue(error?.message.contains("token id \(vocab)") ?? false, "\(String(describing: error))")
        }
    }

    func testRMSNorm() throws {
        let rows = 67, dim = 53
        let x = random.floats(rows * dim, in: -2...2), w = random.floats(dim, in: 0.5...1.5)
        let dx = try upload(x), dw = try upload(w)
        let out = try device.allocate(Float.self, count: rows * dim), rstd = try device.allocate(Float.self, count: rows)
        try device.rmsNormForward(x: dx, weight: dw, out: out, rstd: rstd, rows: rows, dim: dim, eps: 1e-5)
        var expectedOut = [Double](), expectedRstd = [Double]()
        for r in 0..<rows {
            let row = x[r * dim..<(r + 1) * dim].map(Double.init)
            let s = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(dim) + 1e-5).squareRoot()
            expectedRstd.append(s)
            expectedOut += row.enumerated().map { $1 * s * Double(w[$0]) }
        }
        assertClose(try download(out, rows * dim), expectedOut, "rmsnorm out")
        assertClose(try download(rstd, rows), expectedRstd, "rmsnorm rstd")

        let dy = random.floats(rows * dim), dxInitial = random.floats(rows * dim), dwInitial = random.floats(dim)
        let dX = try upload(dxInitial), dW = try upload(dwInitial)
        try device.rmsNormBackward(dOut: try upload(dy), x: dx, weight: dw, rstd: rstd, dX: dX, dWeight: dW,
                                   rows: rows, dim: dim)
        var expectedDX = dxInitial.map(Double.init), expectedDW = dwInitial.map(Double.init)
        for r in 0..<rows {
            let s = expectedRstd[r]
            var dot = 0.0
            for i in 0..<dim { dot += Double(dy[r * dim + i]) * Double(w[i]) * Double(x[r * dim + i]) }
            for i in 0..<dim {
                let xi = Double(x[r * dim + i]), dyi = Double(dy[r * dim + i])
                expectedDX[r * dim + i] += s * dyi * Double(w[i]) - s * s * s * xi * dot / Double(dim)
                expectedDW[i] += dyi * xi * s
            }
        }
        assertClose(try download(dX, rows * dim), expectedDX, "rmsnorm dX (accumulated)")
        assertClose(try download(dW, dim), expectedDW, "rmsnorm dWeight (accumulated)")
    }

    func testRotaryEmbeddingAndItsInverse() throws {
        let batch = 2, seqLen = 11, heads = 3, headDim = 8, half = headDim / 2, maxSeqLen = 16
        var cosTable = [Float](), sinTable = [Float]()
        for t in 0..<maxSeqLen {
            for i in 0..<half {
                let angle = Double(t) / pow(10_000, Double(2 * i) / Double(headDim))
                cosTable.append(Float(cos(angle)))
                sinTable.append(Float(sin(angle)))
            }
        }
        let x = random.floats(batch * seqLen * heads * headDim)
        let dx = try upload(x), dc = try upload(cosTable), ds = try upload(sinTable)
        try device.rotaryEmbedding(x: dx, cos: dc, sin: ds, batch: batch, seqLen: seqLen, heads: heads,
                                   headDim: headDim, inverse: false)
        var expected = x.map(Double.init)
        for b in 0..<batch {
            for t in 0..<seqLen {
                for h in 0..<heads {
                    let base = ((b * seqLen + t) * heads + h) * headDim
                    for i in 0..<half {
                        let c = Double(cosTable[t * half + i]), s = Double(sinTable[t * half + i])
                        let x1 = Double(x[base + i]), x2 = Double(x[base + i + half])
                        expected[base + i] = x1 * c - x2 * s
                        expected[base + i + half] = x2 * c + x1 * s
                    }
                }
            }
        }
        assertClose(try download(dx, x.count), expected, "rope")
        try device.rotaryEmbedding(x: dx, cos: dc, sin: ds, batch: batch, seqLen: seqLen, heads: heads,
                                   headDim: headDim, inverse: true)
        assertClose(try download(dx, x.count), x.map(Double.init), "rope then inverse")
    }

    func testCausalGroupedAttentionForwardAndBackward() throws {
        // seqLen over the stub's 64-row block, heads grouped 3 per KV head.
        let batch = 2, seqLen = 70, heads = 6, kvHeads = 2, headDim = 16
        let group = heads / kvHeads, scale = 1 / Double(headDim).squareRoot()
        let qCount = batch * seqLen * heads * headDim, kvCount = batch * seqLen * kvHeads * headDim
        let q = random.floats(qCount), k = random.floats(kvCount), v = random.floats(kvCount)
        let dq = try upload(q), dk = try upload(k), dv = try upload(v)
        let out = try device.allocate(Float.self, count: qCount)
        let lse = try device.allocate(Float.self, count: batch * heads * seqLen)
        try device.attentionForward(q: dq, k: dk, v: dv, out: out, lse: lse, batch: batch, seqLen: seqLen,
                                    heads: heads, kvHeads: kvHeads, headDim: headDim)

        func qi(_ b: Int, _ t: Int, _ h: Int) -> Int { ((b * seqLen + t) * heads + h) * headDim }
        func ki(_ b: Int, _ t: Int, _ h: Int) -> Int { ((b * seqLen + t) * kvHeads + h) * headDim }
        let dOut = random.floats(qCount)
        var expectedOut = [Double](repeating: 0, count: qCount)
        var expectedLse = [Double](repeating: 0, count: batch * heads * seqLen)
        var expectedDQ = [Double](repeating: 0, count: qCount)
        var expectedDK = [Double](repeating: 0, count: kvCount), expectedDV = expectedDK
        for b in 0..<batch {
            for h in 0..<heads {
                let kvh = h / group
                for t in 0..<seqLen {
                    var scores = [Double](repeating: 0, count: t + 1)
                    for j in 0...t {
                        var dot = 0.0
                        for d in 0..<headDim { dot += Double(q[qi(b, t, h) + d]) * Double(k[ki(b, j, kvh) + d]) }
                        scores[j] = dot * scale
                    }
                    let maxScore = scores.max() ?? 0
                    let rowLse = maxScore + log(scores.reduce(0) { $0 + exp($1 - maxScore) })
                    expectedLse[(b * heads + h) * seqLen + t] = rowLse
                    let p = scores.map { exp($0 - rowLse) }
                    for j in 0...t {
                        for d in 0..<headDim { expectedOut[qi(b, t, h) + d] += p[j] * Double(v[ki(b, j, kvh) + d]) }
                    }
                    // Backward, from the reference's own probabilities.
                    var dp = [Double](repeating: 0, count: t + 1)
                    for j in 0...t {
                        for d in 0..<headDim { dp[j] += Double(dOut[qi(b, t, h) + d]) * Double(v[ki(b, j, kvh) + d]) }
                    }
                    let delta = zip(p, dp).reduce(0) { $0 + $1.0 * $1.1 }
                    for j in 0...t {
                        let ds = p[j] * (dp[j] - delta)
                        for d in 0..<headDim {
                            expectedDQ[qi(b, t, h) + d] += scale * ds * Double(k[ki(b, j, kvh) + d])
                            expectedDK[ki(b, j, kvh) + d] += scale * ds * Double(q[qi(b, t, h) + d])
                            expectedDV[ki(b, j, kvh) + d] += p[j] * Double(dOut[qi(b, t, h) + d])
                        }
                    }
                }
            }
        }
        assertClose(try download(out, qCount), expectedOut, "attention out")
        assertClose(try download(lse, expectedLse.count), expectedLse, "attention lse")

        // Garbage in the gradient buffers: backward must overwrite, not accumulate.
        let gq = try upload(random.floats(qCount)), gk = try upload(random.floats(kvCount))
        let gv = try upload(random.floats(kvCount))
        try device.attentionBackward(dOut: try upload(dOut), q: dq, k: dk, v: dv, out: out, lse: lse, dQ: gq, dK: gk,
                                     dV: gv, batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads,
                                     headDim: headDim)
        assertClose(try download(gq, qCount), expectedDQ, "attention dQ")
        assertClose(try download(gk, kvCount), expectedDK, "attention dK")
        assertClose(try download(gv, kvCount), expectedDV, "attention dV")
    }

    func testSwiGLU() throws {
        let n = 20_011
        let g = random.floats(n, in: -6...6), u = random.floats(n), dy = random.floats(n)
        let dg = try upload(g), du = try upload(u)
        let out = try device.allocate(Float.self, count: n)
        try device.swigluForward(gate: dg, up: du, out: out, count: n)
        func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        assertClose(try download(out, n), (0..<n).map { Double(g[$0]) * sigmoid(Double(g[$0])) * Double(u[$0]) },
                    "swiglu forward")
        let dGate = try upload(random.floats(n)), dUp = try upload(random.floats(n))
        try device.swigluBackward(dOut: try upload(dy), gate: dg, up: du, dGate: dGate, dUp: dUp, count: n)
        let expectedDUp = (0..<n).map { Double(dy[$0]) * Double(g[$0]) * sigmoid(Double(g[$0])) }
        let expectedDGate = (0..<n).map { i -> Double in
            let gi = Double(g[i]), s = sigmoid(gi)
            return Double(dy[i]) * Double(u[i]) * s * (1 + gi * (1 - s))
        }
        assertClose(try download(dUp, n), expectedDUp, "swiglu dUp")
        assertClose(try download(dGate, n), expectedDGate, "swiglu dGate")
    }

    func testCrossEntropyInPlaceWithIgnoredTargets() throws {
        let rows = 13, vocab = 517, lossScale: Float = 0.125
        let logits = random.floats(rows * vocab, in: -8...8)
        var targets = (0..<rows).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) }
        targets[3] = -1
        targets[7] = -100
        let dLogits = try upload(logits), dTargets = try device.upload(targets)
        let losses = try device.allocate(Float.self, count: rows)
        try device.crossEntropyForwardBackward(logits: dLogits, targets: dTargets, losses: losses, rows: rows,
                                               vocab: vocab, lossScale: lossScale)
        var expectedLoss = [Double](), expectedGradient = [Double]()
        for r in 0..<rows {
            let row = logits[r * vocab..<(r + 1) * vocab].map(Double.init)
            if targets[r] < 0 {
                expectedLoss.append(0)
                expectedGradient += [Double](repeating: 0, count: vocab)
                continue
            }
            let maxLogit = row.max() ?? 0
            let lse = maxLogit + log(row.reduce(0) { $0 + exp($1 - maxLogit) })
            expectedLoss.append(lse - row[Int(targets[r])])
            expectedGradient += row.enumerated().map { j, value in
                Double(lossScale) * (exp(value - lse) - (j == Int(targets[r]) ? 1 : 0))
            }
        }
        assertClose(try download(losses, rows), expectedLoss, "cross-entropy losses")
        assertClose(try download(dLogits, rows * vocab), expectedGradient, "cross-entropy gradient")

        let bad = try device.upload([Int32(vocab)])
        XCTAssertThrowsError(try device.crossEntropyForwardBackward(logits: dLogits, targets: bad, losses: losses,
                                                                    rows: 1, vocab: vocab, lossScale: 1))
    }

    func testAdamWInPyTorchForm() throws {
        let n = 5_003
        let lr: Float = 3e-3, beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8, decay: Float = 0.1
        var p = random.floats(n).map(Double.init), m = [Double](repeating: 0, count: n), v = m
        let dp = try upload(p.map(Float.init)), dm = try device.allocate(Float.self, count: n)
        let dv = try device.allocate(Float.self, count: n)
        for step in 1...3 {
            let g = random.floats(n)
            try device.adamw(params: dp, grads: try upload(g), m: dm, v: dv, count: n, lr: lr, beta1: beta1,
                             beta2: beta2, eps: eps, weightDecay: decay, step: step)
            let (l, b1, b2, e, wd) = (Double(lr), Double(beta1), Double(beta2), Double(eps), Double(decay))
            for i in 0..<n {
                let gi = Double(g[i])
                p[i] -= l * wd * p[i]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                let mHat = m[i] / (1 - pow(b1, Double(step))), vHat = v[i] / (1 - pow(b2, Double(step)))
                p[i] -= l * mHat / (vHat.squareRoot() + e)
            }
            assertClose(try download(dp, n), p, "adamw params, step \(step)")
            assertClose(try download(dm, n), m, "adamw m, step \(step)")
            assertClose(try download(dv, n), v, "adamw v, step \(step)")
        }
    }

    func testTrafficCountersAndName() throws {
        let before = (device.bytesToDevice, device.bytesToHost)
        let pointer = try device.upload([Float](repeating: 1, count: 100))
        _ = try device.download(pointer, count: 10)
        XCTAssertEqual(device.bytesToDevice - before.0, 400)
        XCTAssertEqual(device.bytesToHost - before.1, 40)
        XCTAssertTrue(device.name.hasPrefix("hpu:0 (stub plugin "), device.name)
        XCTAssertEqual(device.bytesAllocated, 400)
        device.free(pointer)
        XCTAssertEqual(device.bytesAllocated, 0)
        XCTAssertThrowsError(try device.download(pointer, count: 1), "a freed pointer") { error in
            XCTAssertTrue("\(error)".contains("not inside a live allocation"), "\(error)")
        }
    }
}
