import Foundation

/// Causal grouped-query attention on the CPU.
///
/// One task per (batch, KV head): the query heads sharing a KV head run in the same task, so the `dK`/`dV`
/// accumulations of a group never race. Each head is two `sgemm`s around a row softmax; the backward pass recomputes
/// the probabilities from the saved log-sum-exp instead of keeping `(T, T)` matrices per head, so activation memory
/// stays linear in the sequence length.
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
                        sgemm(false, true, T, T, headDim, scale, qb, qStride, kb, kvStride, 0, scores, T)
                        let lseRow = lse + (b * heads + h) * T
                        for i in 0..<T {
                            lseRow[i] = causalSoftmaxRow(scores + i * T, length: i + 1, total: T)
                        }
                        sgemm(false, false, T, headDim, T, 1, scores, T, vb, kvStride, 0, ob, qStride)
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
                    for (index, h) in ((g * group)..<((g + 1) * group)).enumerated() {
                        let qOffset = b * T * qStride + h * headDim
                        let lseRow = lse + (b * heads + h) * T
                        // P = exp(scale * Q K^T - lse), causal.
                        sgemm(false, true, T, T, headDim, scale, q + qOffset, qStride, k + kvOffset, kvStride,
                              0, probs, T)
                        for i in 0..<T {
                            expShiftedRow(probs + i * T, length: i + 1, total: T, shift: lseRow[i])
                        }
                        // dP = dO V^T
                        sgemm(false, true, T, T, headDim, 1, dO + qOffset, qStride, v + kvOffset, kvStride,
                              0, dProbs, T)
                        // dS = P * (dP - rowsum(dO * O))
                        for i in 0..<T {
                            let d = dot(dO + qOffset + i * qStride, o + qOffset + i * qStride, headDim)
                            softmaxBackwardRow(probs + i * T, dProbs + i * T, length: i + 1, total: T, rowDot: d)
                        }
                        let beta: Float = index == 0 ? 0 : 1
                        // dV += P^T dO ; dQ = scale dS K ; dK += scale dS^T Q
                        sgemm(true, false, T, headDim, T, 1, probs, T, dO + qOffset, qStride,
                              beta, dV + kvOffset, kvStride)
                        sgemm(false, false, T, headDim, T, scale, dProbs, T, k + kvOffset, kvStride,
                              0, dQ + qOffset, qStride)
                        sgemm(true, false, T, headDim, T, scale, dProbs, T, q + qOffset, qStride,
                              beta, dK + kvOffset, kvStride)
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

/// Softmax of the first `length` entries in place, zeroing the masked rest up to `total`; returns the log-sum-exp.
@inline(__always)
private func causalSoftmaxRow(_ row: UnsafeMutablePointer<Float>, length: Int, total: Int) -> Float {
    var maximum = -Float.infinity
    for j in 0..<length { maximum = max(maximum, row[j]) }
    let sum = expInPlace(row, length: length, shift: maximum)
    let inverse = 1 / sum
    var j = 0
    while j + 8 <= length {
        storeVec(loadVec(row + j) * inverse, row + j)
        j += 8
    }
    while j < length {
        row[j] *= inverse
        j += 1
    }
    (row + length).update(repeating: 0, count: total - length)
    return maximum + log(sum)
}

/// `row[j] = exp(row[j] - shift)` for `j < length`, zero for the masked rest.
@inline(__always)
private func expShiftedRow(_ row: UnsafeMutablePointer<Float>, length: Int, total: Int, shift: Float) {
    _ = expInPlace(row, length: length, shift: shift)
    (row + length).update(repeating: 0, count: total - length)
}

/// `row[j] = exp(row[j] - shift)` for `j < length`; returns the sum.
@inline(__always)
func expInPlace(_ row: UnsafeMutablePointer<Float>, length: Int, shift: Float) -> Float {
    var acc = Vec()
    var j = 0
    while j + 8 <= length {
        let e = vexp(loadVec(row + j) - shift)
        storeVec(e, row + j)
        acc += e
        j += 8
    }
    var tail: Float = 0
    while j < length {
        let e = sexp(row[j] - shift)
        row[j] = e
        tail += e
        j += 1
    }
    return acc.sum() + tail
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
