import Foundation

/// Embedding, RMSNorm, rotary embedding and SwiGLU on the CPU.
extension CPUDevice {
    public func embeddingForward(tokens: DevicePointer<Int32>, table: DevicePointer<Float>, out: DevicePointer<Float>,
                                 count: Int, dim: Int, vocab: Int) throws {
        let tokens = host(tokens), table = host(table), out = host(out)
        if let bad = (0..<count).first(where: { tokens[$0] < 0 || Int(tokens[$0]) >= vocab }) {
            throw DeviceError(.invalidArgument, "embedding: token id \(tokens[bad]) at position \(bad) is outside the vocabulary of \(vocab)")
        }
        parallelChunks(count, threads: threads, grain: 64) { _, rows in
            for i in rows {
                (out + i * dim).update(from: table + Int(tokens[i]) * dim, count: dim)
            }
        }
    }

    public func embeddingBackward(tokens: DevicePointer<Int32>, dOut: DevicePointer<Float>,
                                  dTable: DevicePointer<Float>, count: Int, dim: Int, vocab: Int) throws {
        let tokens = host(tokens), dOut = host(dOut), dTable = host(dTable)
        // Split by columns, not tokens: repeated ids then never race, and the order of additions is fixed.
        parallelChunks(dim, threads: threads, grain: 32) { _, columns in
            for i in 0..<count {
                let src = dOut + i * dim, dst = dTable + Int(tokens[i]) * dim
                for c in columns { dst[c] += src[c] }
            }
        }
    }

    public func rmsNormForward(x: DevicePointer<Float>, weight: DevicePointer<Float>, out: DevicePointer<Float>,
                               rstd: DevicePointer<Float>, rows: Int, dim: Int, eps: Float) throws {
        let x = host(x), w = host(weight), out = host(out), rstd = host(rstd)
        parallelChunks(rows, threads: threads, grain: 16) { _, range in
            for r in range {
                let xr = x + r * dim, yr = out + r * dim
                let s = 1 / (dot(xr, xr, dim) / Float(dim) + eps).squareRoot()
                rstd[r] = s
                var i = 0
                while i + 8 <= dim {
                    storeVec(loadVec(xr + i) * s * loadVec(w + i), yr + i)
                    i += 8
                }
                while i < dim {
                    yr[i] = xr[i] * s * w[i]
                    i += 1
                }
            }
        }
    }

    public func rmsNormBackward(dOut: DevicePointer<Float>, x: DevicePointer<Float>, weight: DevicePointer<Float>,
                                rstd: DevicePointer<Float>, dX: DevicePointer<Float>, dWeight: DevicePointer<Float>,
                                rows: Int, dim: Int) throws {
        let dy = host(dOut), x = host(x), w = host(weight), rstd = host(rstd), dx = host(dX), dw = host(dWeight)
        let chunks = max(1, min(threads, rows / 16))
        // Each chunk sums its rows' weight gradient privately; the partial sums are added in chunk order.
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks * dim)
        partial.initialize(repeating: 0, count: chunks * dim)
        defer { partial.deallocate() }
        parallelChunks(rows, threads: chunks, grain: 1) { chunk, range in
            let dwc = partial + chunk * dim
            for r in range {
                let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
                let s = rstd[r]
                // dx = s * (w*dy - xhat * mean(xhat * w*dy)), xhat = x*s
                var acc = Vec()
                var tail: Float = 0
                var i = 0
                while i + 8 <= dim {
                    acc += loadVec(dyr + i) * loadVec(w + i) * loadVec(xr + i)
                    i += 8
                }
                while i < dim {
                    tail += dyr[i] * w[i] * xr[i]
                    i += 1
                }
                let meanTerm = (acc.sum() + tail) * s * s / Float(dim)
                i = 0
                while i + 8 <= dim {
                    let xv = loadVec(xr + i), dyv = loadVec(dyr + i)
                    storeVec(loadVec(dxr + i) + s * (dyv * loadVec(w + i) - xv * meanTerm), dxr + i)
                    storeVec(loadVec(dwc + i) + dyv * xv * s, dwc + i)
                    i += 8
                }
                while i < dim {
                    dxr[i] += s * (dyr[i] * w[i] - xr[i] * meanTerm)
                    dwc[i] += dyr[i] * xr[i] * s
                    i += 1
                }
            }
        }
        for chunk in 0..<chunks {
            let dwc = partial + chunk * dim
            for i in 0..<dim { dw[i] += dwc[i] }
        }
    }

    public func rotaryEmbedding(x: DevicePointer<Float>, cos: DevicePointer<Float>, sin: DevicePointer<Float>,
                                batch: Int, seqLen: Int, heads: Int, headDim: Int, inverse: Bool) throws {
        let x = host(x), cosTable = host(cos), sinTable = host(sin)
        let half = headDim / 2
        let sign: Float = inverse ? -1 : 1
        parallelChunks(batch * seqLen, threads: threads, grain: 32) { _, rows in
            for row in rows {
                let t = row % seqLen
                let c = cosTable + t * half, s = sinTable + t * half
                for h in 0..<heads {
                    let v = x + (row * heads + h) * headDim
                    for i in 0..<half {
                        let x1 = v[i], x2 = v[i + half], si = sign * s[i]
                        v[i] = x1 * c[i] - x2 * si
                        v[i + half] = x2 * c[i] + x1 * si
                    }
                }
            }
        }
    }

    public func swigluForward(gate: DevicePointer<Float>, up: DevicePointer<Float>, out: DevicePointer<Float>,
                              count: Int) throws {
        let g = host(gate), u = host(up), out = host(out)
        parallelChunks(count, threads: threads, grain: 1 << 14) { _, range in
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                let gv = loadVec(g + i)
                storeVec(gv * vsigmoid(gv) * loadVec(u + i), out + i)
                i += 8
            }
            while i < range.upperBound {
                let gv = g[i]
                out[i] = gv / (1 + sexp(-gv)) * u[i]
                i += 1
            }
        }
    }

    public func swigluBackward(dOut: DevicePointer<Float>, gate: DevicePointer<Float>, up: DevicePointer<Float>,
                               dGate: DevicePointer<Float>, dUp: DevicePointer<Float>, count: Int) throws {
        let dy = host(dOut), g = host(gate), u = host(up), dg = host(dGate), du = host(dUp)
        parallelChunks(count, threads: threads, grain: 1 << 14) { _, range in
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                let gv = loadVec(g + i), dyv = loadVec(dy + i)
                let s = vsigmoid(gv)
                storeVec(dyv * gv * s, du + i)
                storeVec(dyv * loadVec(u + i) * s * (1 + gv * (1 - s)), dg + i)
                i += 8
            }
            while i < range.upperBound {
                let gv = g[i]
                let s = 1 / (1 + sexp(-gv))
                du[i] = dy[i] * gv * s
                dg[i] = dy[i] * u[i] * s * (1 + gv * (1 - s))
                i += 1
            }
        }
    }
}

/// `sum(a[i] * b[i])` over `n` floats, 8 lanes at a time.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Vec()
    var i = 0
    while i + 8 <= n {
        acc += loadVec(a + i) * loadVec(b + i)
        i += 8
    }
    var tail: Float = 0
    while i < n {
        tail += a[i] * b[i]
        i += 1
    }
    return acc.sum() + tail
}
