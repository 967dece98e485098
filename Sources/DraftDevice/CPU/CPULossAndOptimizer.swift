import Foundation

/// The fused softmax cross-entropy and the AdamW update on the CPU.
extension CPUDevice {
    public func crossEntropyForwardBackward(logits: DevicePointer<Float>, targets: DevicePointer<Int32>,
                                            losses: DevicePointer<Float>, rows: Int, vocab: Int,
                                            lossScale: Float) throws {
        let logits = host(logits), targets = host(targets), losses = host(losses)
        if let bad = (0..<rows).first(where: { Int(targets[$0]) >= vocab }) {
            throw DeviceError(.invalidArgument, "cross-entropy: target id \(targets[bad]) at row \(bad) is outside the vocabulary of \(vocab)")
        }
        parallelChunks(rows, threads: threads, grain: 1) { _, range in
            for r in range {
                let row = logits + r * vocab
                let target = Int(targets[r])
                guard target >= 0 else {
                    losses[r] = 0
                    row.update(repeating: 0, count: vocab)
                    continue
                }
                let targetLogit = row[target]
                let maximum = rowMax(row, length: vocab)
                let sum = expInPlace(row, length: vocab, shift: maximum)
                losses[r] = log(sum) + maximum - targetLogit
                scaleInPlace(row, length: vocab, by: lossScale / sum)
                row[target] -= lossScale
            }
        }
    }

    public func adamw(params: DevicePointer<Float>, grads: DevicePointer<Float>, m: DevicePointer<Float>,
                      v: DevicePointer<Float>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
                      weightDecay: Float, step: Int) throws {
        let p = host(params), g = host(grads), m = host(m), v = host(v)
        // The same operation order as torch.optim.AdamW (single-tensor path), so parity is to rounding.
        let decay = 1 - lr * weightDecay
        let biasCorrection1 = 1 - pow(Double(beta1), Double(step))
        let biasCorrection2 = 1 - pow(Double(beta2), Double(step))
        let stepSize = Float(Double(lr) / biasCorrection1)
        let correction2Sqrt = Float(biasCorrection2.squareRoot())
        let oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2
        parallelChunks(count, threads: threads, grain: 1 << 15) { _, range in
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                let gv = loadVec(g + i)
                let pv = loadVec(p + i) * decay
                var mv = loadVec(m + i)
                mv += oneMinusBeta1 * (gv - mv)
                let vv = loadVec(v + i) * beta2 + oneMinusBeta2 * gv * gv
                let denom = vv.squareRoot() / correction2Sqrt + eps
                storeVec(mv, m + i)
                storeVec(vv, v + i)
                storeVec(pv - stepSize * mv / denom, p + i)
                i += 8
            }
            while i < range.upperBound {
                let gv = g[i]
                m[i] += oneMinusBeta1 * (gv - m[i])
                v[i] = v[i] * beta2 + oneMinusBeta2 * gv * gv
                p[i] = p[i] * decay - stepSize * m[i] / (v[i].squareRoot() / correction2Sqrt + eps)
                i += 1
            }
        }
    }
}
