import Foundation

/// Plain double-precision references for the decode kernels (`DecodeKernels`' doc comments), written from the
/// formulas alone so a backend's kernel is checked against arithmetic it does not share.
enum DecodeReference {
    /// Rotary tables `(positions, headDim/2)`: angle `t * base^(-2i/headDim)`, as Llama's.
    static func rotaryTables(positions: Int, headDim: Int, base: Double = 10_000) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var cosTable = [Float](), sinTable = [Float]()
        for t in 0..<positions {
            for i in 0..<half {
                let angle = Double(t) * pow(base, -2 * Double(i) / Double(headDim))
                cosTable.append(Float(Foundation.cos(angle)))
                sinTable.append(Float(Foundation.sin(angle)))
            }
        }
        return (cosTable, sinTable)
    }

    /// Half-split rotary of `x (rows, heads, headDim)`, row `r` at `positions[r]`.
    static func rotary(_ x: [Float], positions: [Int32], cos: [Float], sin: [Float], heads: Int,
                       headDim: Int) -> [Double] {
        let half = headDim / 2
        var out = x.map(Double.init)
        for (r, position) in positions.enumerated() {
            for h in 0..<heads {
                let base = (r * heads + h) * headDim
                for i in 0..<half {
                    let c = Double(cos[Int(position) * half + i]), s = Double(sin[Int(position) * half + i])
                    let x1 = Double(x[base + i]), x2 = Double(x[base + i + half])
                    out[base + i] = x1 * c - x2 * s
                    out[base + i + half] = x2 * c + x1 * s
                }
            }
        }
        return out
    }

    /// `cache (slotCount, capacity, width)` after writing row `r` of `rows` at `(slots[r], positions[r])`, in order.
    static func cacheWrite(_ cache: [Float], rows: [Float], slots: [Int32], positions: [Int32], width: Int,
                           capacity: Int) -> [Float] {
        var out = cache
        for r in 0..<slots.count {
            let destination = (Int(slots[r]) * capacity + Int(positions[r])) * width
            out.replaceSubrange(destination..<destination + width, with: rows[r * width..<(r + 1) * width])
        }
        return out
    }

    /// Attention of `q (rows, heads, headDim)` over caches `(slotCount, capacity, kvHeads, headDim)`: row `r` sees
    /// positions `0...positions[r]` of slot `slots[r]`.
    static func attentionOverCache(q: [Float], kCache: [Float], vCache: [Float], slots: [Int32], positions: [Int32],
                                   heads: Int, kvHeads: Int, headDim: Int, capacity: Int) -> [Double] {
        let group = heads / kvHeads, scale = 1 / Double(headDim).squareRoot()
        var out = [Double](repeating: 0, count: q.count)
        for r in 0..<slots.count {
            for h in 0..<heads {
                let queryBase = (r * heads + h) * headDim
                let keyOf = { (t: Int) in ((Int(slots[r]) * capacity + t) * kvHeads + h / group) * headDim }
                let keys = Int(positions[r]) + 1
                var scores = (0..<keys).map { t -> Double in
                    let k = keyOf(t)
                    return scale * (0..<headDim).reduce(0.0) { $0 + Double(q[queryBase + $1]) * Double(kCache[k + $1]) }
                }
                let maximum = scores.max() ?? 0
                scores = scores.map { Foundation.exp($0 - maximum) }
                let total = scores.reduce(0, +)
                for t in 0..<keys {
                    let v = keyOf(t)
                    for d in 0..<headDim { out[queryBase + d] += scores[t] / total * Double(vCache[v + d]) }
                }
            }
        }
        return out
    }

    /// Causal attention over whole sequences `(seqLen, heads, headDim)` with K/V `(seqLen, kvHeads, headDim)`: the
    /// full recomputation a KV cache must reproduce.
    static func causalAttention(q: [Float], k: [Float], v: [Float], seqLen: Int, heads: Int, kvHeads: Int,
                                headDim: Int) -> [Double] {
        attentionOverCache(q: q, kCache: k, vCache: v, slots: [Int32](repeating: 0, count: seqLen),
                           positions: (0..<seqLen).map(Int32.init), heads: heads, kvHeads: kvHeads,
                           headDim: headDim, capacity: seqLen)
    }
}
