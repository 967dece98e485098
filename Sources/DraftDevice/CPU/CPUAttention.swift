import Foundation

/// Causal grouped-query attention on the CPU.
///
/// One task per (batch, KV head): the query heads sharing a KV head run in the same task, so the `dK`/`dV`
/// accumulations of a group never race. Each head runs in blocks of `causalBlock` query rows; a block's rows see only
/// the keys up to its last row, so the products skip most of the masked upper triangle (about half the work at long
/// sequence lengths). The backward pass recomputes the probabilities from the saved log-sum-exp instead of keeping
/// `(T, T)` matrices per head, so activation memory stays linear in the sequence length.
extension CPUDevice {
    public func attentionForward(q: DevicePointer<Float>, k: DevicePointer<Float>, v: DevicePointer<Float>,
                                 out: DevicePointer<Float>, lse: DevicePointer<Float>,
                                 batch: Int, seqLen T: Int, heads: Int, kvHeads: Int, headDim: Int) throws {
        try checkHeads(heads: heads, kvHeads: kvHeads)
        let q = host(q), k = host(k), v = host(v), out = host(out), lse = host(lse)
        let group = heads / kvHeads
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        withSerialBLAS {
            parallelChunks(batch * kvHeads, threads: threads, grain: 1) { _, tasks in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
                defer { scores.deallocate() }
                for task in tasks {
                    let b = task / kvHeads, g = task % kvHeads
                    let kb = k + b * T * kvStride + g * headDim, vb = v + b * T * kvStride + g * headDim
                    for h in (g * group)..<((g + 1) * group) {
                        let qb = q + b * T * qStride + h * headDim, ob = out + b * T * qStride + h * headDim
                        let lseRow = lse + (b * heads + h) * T
                        for (r0, r1) in causalBlocks(T) {
                            let rows = r1 - r0, block = scores + r0 * T
                            sgemm(false, true, rows, r1, headDim, scale, qb + r0 * qStride, qStride, kb, kvStride,
                                  0, block, T)
                            for i in r0..<r1 {
                                lseRow[i] = causalSoftmaxRow(scores + i * T, length: i + 1, total: r1)
                            }
                            sgemm(false, false, rows, headDim, r1, 1, block, T, vb, kvStride, 0, ob + r0 * qStride,
                                  qStride)
                        }
                    }
                }
            }
        }
    }

    public func attentionBackward(dOut: DevicePointer<Float>, q: DevicePointer<Float>, k: DevicePointer<Float>,
                                  v: DevicePointer<Float>, out: DevicePointer<Float>, lse: DevicePointer<Float>,
                                  dQ: DevicePointer<Float>, dK: DevicePointer<Float>, dV: DevicePointer<Float>,
                                  batch: Int, seqLen T: Int, heads: Int, kvHeads: Int, headDim: Int) throws {
        try checkHeads(heads: heads, kvHeads: kvHeads)
        let dO = host(dOut), q = host(q), k = host(k), v = host(v), o = host(out), lse = host(lse)
        let dQ = host(dQ), dK = host(dK), dV = host(dV)
        let group = heads / kvHeads
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        withSerialBLAS {
            parallelChunks(batch * kvHeads, threads: threads, grain: 1) { _, tasks in
                let probs = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
                let dProbs = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
                defer { probs.deallocate(); dProbs.deallocate() }
                for task in tasks {
                    let b = task / kvHeads, g = task % kvHeads
                    let kvOffset = b * T * kvStride + g * headDim
                    // dK and dV accumulate over the group's heads and the query blocks: start from zero.
                    for t in 0..<T {
                        (dK + kvOffset + t * kvStride).update(repeating: 0, count: headDim)
                        (dV + kvOffset + t * kvStride).update(repeating: 0, count: headDim)
                    }
                    for h in (g * group)..<((g + 1) * group) {
                        let qOffset = b * T * qStride + h * headDim
                        let lseRow = lse + (b * heads + h) * T
                        for (r0, r1) in causalBlocks(T) {
                            let rows = r1 - r0, p = probs + r0 * T, dp = dProbs + r0 * T
                            let qBlock = qOffset + r0 * qStride
                            // P = exp(scale * Q K^T - lse), causal.
                            sgemm(false, true, rows, r1, headDim, scale, q + qBlock, qStride, k + kvOffset, kvStride,
                                  0, p, T)
                            for i in r0..<r1 {
                                expShiftedRow(probs + i * T, length: i + 1, total: r1, shift: lseRow[i])
                            }
                            // dP = dO V^T
                            sgemm(false, true, rows, r1, headDim, 1, dO + qBlock, qStride, v + kvOffset, kvStride,
                                  0, dp, T)
                            // dS = P * (dP - rowsum(dO * O))
                            for i in r0..<r1 {
                                let d = dot(dO + qOffset + i * qStride, o + qOffset + i * qStride, headDim)
                                softmaxBackwardRow(probs + i * T, dProbs + i * T, length: i + 1, total: r1, rowDot: d)
                            }
                            // dV += P^T dO ; dQ = scale dS K ; dK += scale dS^T Q
                            sgemm(true, false, r1, headDim, rows, 1, p, T, dO + qBlock, qStride,
                                  1, dV + kvOffset, kvStride)
                            sgemm(false, false, rows, headDim, r1, scale, dp, T, k + kvOffset, kvStride,
                                  0, dQ + qBlock, qStride)
                            sgemm(true, false, r1, headDim, rows, scale, dp, T, q + qBlock, qStride,
                                  1, dK + kvOffset, kvStride)
                        }
                    }
                }
            }
        }
    }

    private func checkHeads(heads: Int, kvHeads: Int) throws {
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw DeviceError(.invalidArgument, "attention: heads \(heads) is not a multiple of kv_heads \(kvHeads)")
        }
    }
}

/// Query rows per causal block: large enough for efficient matrix products, small enough that the skipped triangle
/// matters.
let causalBlock = 64

/// `[r0, r1)` row ranges of the causal blocks of a `T`-row sequence.
@inline(__always)
func causalBlocks(_ T: Int) -> [(Int, Int)] {
    stride(from: 0, to: T, by: causalBlock).map { ($0, min($0 + causalBlock, T)) }
}

/// Softmax of the first `length` entries in place, zeroing the masked rest up to `total`; returns the log-sum-exp.
@inline(__always)
private func causalSoftmaxRow(_ row: UnsafeMutablePointer<Float>, length: Int, total: Int) -> Float {
    let maximum = rowMax(row, length: length)
    let sum = expInPlace(row, length: length, shift: maximum)
    scaleInPlace(row, length: length, by: 1 / sum)
    (row + length).update(repeating: 0, count: total - length)
    return maximum + log(sum)
}

/// `row[j] = exp(row[j] - shift)` for `j < length`, zero for the masked rest.
@inline(__always)
private func expShiftedRow(_ row: UnsafeMutablePointer<Float>, length: Int, total: Int, shift: Float) {
    _ = expInPlace(row, length: length, shift: shift)
    (row + length).update(repeating: 0, count: total - length)
}

/// `dS[j] = P[j] * (dP[j] - rowDot)` in place in `dP`, zero for the masked rest (which `dO V^T` filled).
@inline(__always)
private func softmaxBackwardRow(_ p: UnsafeMutablePointer<Float>, _ dp: UnsafeMutablePointer<Float>,
                                      length: Int, total: Int, rowDot: Float) {
    var j = 0
    while j + 8 <= length {
        storeVec(loadVec(p + j) * (loadVec(dp + j) - rowDot), dp + j)
        j += 8
    }
    while j < length {
        dp[j] = p[j] * (dp[j] - rowDot)
        j += 1
    }
    (dp + length).update(repeating: 0, count: total - length)
}
