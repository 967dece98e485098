import CQuantDot
import Foundation

/// One KV head's cached keys and values for one sequence, and the two products of attention over them for the query
/// heads that share it: scores `q_h · k_t` and the weighted sum `Σ_t p_h[t] v_t`.
///
/// Decode is bound by how these loops issue work, not by arithmetic: one dot product per (head, key) ends in a
/// horizontal sum on a single dependency chain, and adding each value row into the output through memory costs a
/// load and a store per multiply-add. So where the head dimension is a multiple of 16 the products run on 16-lane
/// registers: four keys at a time with their four sums reduced together, and the weighted sum with the output held in
/// registers, 64 dimensions per pass over the values (they stay in L2 between passes). Other head dimensions take the
/// plain loops, which are exact to the same float rounding.
struct CacheHead {
    let keys: UnsafePointer<Float>
    let values: UnsafePointer<Float>
    /// Floats from one position's row to the next (all KV heads of a position are adjacent).
    let stride: Int
    let length: Int
    let headDim: Int

    private var vectorised: Bool { headDim % 16 == 0 }

    /// Positions ahead whose rows the vectorised loops fetch: a head's rows are `stride` floats apart (the other KV
    /// heads sit between them), a pattern the hardware prefetcher follows late; at batch 64 over KD-length prompts
    /// the first pass over the keys stalled on memory.
    static let prefetchDistance = 16

    /// Fetches the `headDim` floats of rows `from..<from + count` of `base` (those below `limit`) into L1.
    @inline(__always)
    private func prefetchRows(_ base: UnsafePointer<Float>, from: Int, count: Int, limit: Int) {
        var t = from
        while t < min(from + count, limit) {
            var d = 0
            while d < headDim {
                sd_prefetch(base + t * stride + d)
                d += 16
            }
            t += 1
        }
    }

    /// `scores[h * length + t] = scale * q_h · k_t` for the `heads` query rows at `queries` (adjacent, `headDim` each).
    func scores(queries: UnsafePointer<Float>, heads: Int, scale: Float, into scores: UnsafeMutablePointer<Float>) {
        guard vectorised else {
            for h in 0..<heads {
                for t in 0..<length {
                    scores[h * length + t] = dot(queries + h * headDim, keys + t * stride, headDim) * scale
                }
            }
            return
        }
        var t = 0
        while t + 4 <= length {
            let k0 = keys + t * stride, k1 = k0 + stride, k2 = k1 + stride, k3 = k2 + stride
            prefetchRows(keys, from: t + Self.prefetchDistance, count: 4, limit: length)
            for h in 0..<heads {
                let query = queries + h * headDim
                var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
                var d = 0
                while d < headDim {
                    let qv = lanes(query + d)
                    a0 = a0.addingProduct(qv, lanes(k0 + d))
                    a1 = a1.addingProduct(qv, lanes(k1 + d))
                    a2 = a2.addingProduct(qv, lanes(k2 + d))
                    a3 = a3.addingProduct(qv, lanes(k3 + d))
                    d += 16
                }
                let sums = sum4(a0, a1, a2, a3) * scale
                let row = scores + h * length + t
                row[0] = sums[0]; row[1] = sums[1]; row[2] = sums[2]; row[3] = sums[3]
            }
            t += 4
        }
        while t < length {
            for h in 0..<heads {
                scores[h * length + t] = dot(queries + h * headDim, keys + t * stride, headDim) * scale
            }
            t += 1
        }
    }

    /// `out_h = Σ_t weights[h * length + t] · v_t` for `heads` output rows (adjacent, `headDim` each), overwriting
    /// them.
    func weightedValues(weights: UnsafePointer<Float>, heads: Int, into out: UnsafeMutablePointer<Float>) {
        guard vectorised else {
            for h in 0..<heads {
                let o = out + h * headDim, p = weights + h * length
                o.update(repeating: 0, count: headDim)
                for t in 0..<length { axpyRow(p[t], values + t * stride, o, headDim) }
            }
            return
        }
        for h in 0..<heads {
            let o = out + h * headDim, p = weights + h * length
            var d = 0
            // 64 dimensions (four registers) per pass; a head dimension of 16, 32 or 48 leaves some of them unused.
            while d < headDim {
                let width = min(64, headDim - d)
                var o0 = Lanes(), o1 = Lanes(), o2 = Lanes(), o3 = Lanes()
                var row = values + d
                for t in 0..<length {
                    if h == 0 && d == 0 { prefetchRows(values, from: t + Self.prefetchDistance, count: 1, limit: length) }
                    let w = Lanes(repeating: p[t])
                    o0 = o0.addingProduct(w, lanes(row))
                    if width > 16 { o1 = o1.addingProduct(w, lanes(row + 16)) }
                    if width > 32 { o2 = o2.addingProduct(w, lanes(row + 32)) }
                    if width > 48 { o3 = o3.addingProduct(w, lanes(row + 48)) }
                    row += stride
                }
                storeLanes(o0, o + d)
                if width > 16 { storeLanes(o1, o + d + 16) }
                if width > 32 { storeLanes(o2, o + d + 32) }
                if width > 48 { storeLanes(o3, o + d + 48) }
                d += width
            }
        }
    }
}

/// Where one call of attention over the cache reads and writes: the task (query row, KV head) to its cached rows,
/// queries and outputs.
struct CacheAttentionGeometry {
    let q: UnsafeMutablePointer<Float>
    let kCache: UnsafeMutablePointer<Float>
    let vCache: UnsafeMutablePointer<Float>
    let out: UnsafeMutablePointer<Float>
    let slots: UnsafeMutablePointer<Int32>
    let positions: UnsafeMutablePointer<Int32>
    let kvHeads: Int
    let group: Int
    let headDim: Int
    let capacity: Int
    let scale: Float

    var kvStride: Int { kvHeads * headDim }
    var qStride: Int { kvHeads * group * headDim }

    /// KV head `kvHead` of row `row`'s sequence over the cached positions `range`.
    func head(row: Int, kvHead: Int, positions range: Range<Int>) -> CacheHead {
        let base = (Int(slots[row]) * capacity + range.lowerBound) * kvStride + kvHead * headDim
        return CacheHead(keys: kCache + base, values: vCache + base, stride: kvStride, length: range.count,
                         headDim: headDim)
    }

    func queries(row: Int, kvHead: Int) -> UnsafePointer<Float> {
        UnsafePointer(q + row * qStride + kvHead * group * headDim)
    }

    func outputs(row: Int, kvHead: Int) -> UnsafeMutablePointer<Float> {
        out + row * qStride + kvHead * group * headDim
    }

    /// Attention for few (row, KV head) tasks, each task's positions cut into one run per thread so that the threads
    /// share the work evenly: at batch-1 decode SmolLM2's 3 KV heads split 2:1 over two threads, and attention after
    /// a 512-token prompt is a fifth of a decode step. Each run keeps its own maximum `m_p`, sum `s_p` of
    /// `exp(score - m_p)` and unnormalised weighted values `o_p`; the output is `Σ_p e^(m_p - M) o_p / Σ_p e^(m_p - M)
    /// s_p` with `M = max m_p`: the same softmax, its terms summed in another order (float rounding apart, the
    /// one-run result).
    func splitOverPositions(rows: Int, threads: Int) {
        let parts = threads
        let units = rows * kvHeads * parts
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: units * group * headDim)
        let maxima = UnsafeMutablePointer<Float>.allocate(capacity: units * group)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: units * group)
        defer { partial.deallocate(); maxima.deallocate(); sums.deallocate() }
        parallelChunks(units, threads: threads, grain: 1) { _, range in
            var longest = 0
            for unit in range { longest = max(longest, (Int(positions[unit / (kvHeads * parts)]) + parts) / parts) }
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * max(longest, 1))
            defer { scores.deallocate() }
            for unit in range {
                let task = unit / parts, part = unit % parts
                let r = task / kvHeads, g = task % kvHeads
                let length = Int(positions[r]) + 1
                let span = (length * part / parts)..<(length * (part + 1) / parts)
                let o = partial + unit * group * headDim
                guard !span.isEmpty else {
                    for h in 0..<group { maxima[unit * group + h] = -.infinity; sums[unit * group + h] = 0 }
                    o.update(repeating: 0, count: group * headDim)
                    continue
                }
                let head = self.head(row: r, kvHead: g, positions: span)
                head.scores(queries: queries(row: r, kvHead: g), heads: group, scale: scale, into: scores)
                for h in 0..<group {
                    let row = scores + h * span.count
                    let maximum = rowMax(row, length: span.count)
                    maxima[unit * group + h] = maximum
                    sums[unit * group + h] = expInPlace(row, length: span.count, shift: maximum)
                }
                head.weightedValues(weights: scores, heads: group, into: o)
            }
        }
        for task in 0..<(rows * kvHeads) {
            let output = outputs(row: task / kvHeads, kvHead: task % kvHeads)
            for h in 0..<group {
                var top = -Float.infinity
                for part in 0..<parts { top = max(top, maxima[(task * parts + part) * group + h]) }
                var total: Float = 0
                let o = output + h * headDim
                o.update(repeating: 0, count: headDim)
                for part in 0..<parts {
                    let unit = task * parts + part
                    let weight = maxima[unit * group + h] == -.infinity ? 0 : exp(maxima[unit * group + h] - top)
                    total += weight * sums[unit * group + h]
                    let source = partial + (unit * group + h) * headDim
                    for d in 0..<headDim { o[d] += weight * source[d] }
                }
                let inverse = 1 / total
                for d in 0..<headDim { o[d] *= inverse }
            }
        }
    }
}

private typealias Lanes = SIMD16<Float>

@inline(__always)
private func lanes(_ p: UnsafePointer<Float>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
}

@inline(__always)
private func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
}

/// The four horizontal sums `(a.sum(), b.sum(), c.sum(), d.sum())`, by halving and interleaving: 7 adds and the
/// shuffles between them, where four separate reductions would take 16 dependent steps.
@inline(__always)
private func sum4(_ a: Lanes, _ b: Lanes, _ c: Lanes, _ d: Lanes) -> SIMD4<Float> {
    let ab = SIMD16(lowHalf: a.lowHalf, highHalf: b.lowHalf) + SIMD16(lowHalf: a.highHalf, highHalf: b.highHalf)
    let cd = SIMD16(lowHalf: c.lowHalf, highHalf: d.lowHalf) + SIMD16(lowHalf: c.highHalf, highHalf: d.highHalf)
    // Lanes 0-3 hold partial sums of a, 4-7 of b, 8-11 of c, 12-15 of d.
    let abcd = SIMD16(lowHalf: ab.evenHalf, highHalf: cd.evenHalf) + SIMD16(lowHalf: ab.oddHalf, highHalf: cd.oddHalf)
    let pairs = abcd.evenHalf + abcd.oddHalf
    return pairs.evenHalf + pairs.oddHalf
}

/// `y[i] += a * x[i]` over `n` floats.
@inline(__always)
private func axpyRow(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n {
        storeVec(loadVec(y + i) + a * loadVec(x + i), y + i)
        i += 8
    }
    while i < n {
        y[i] += a * x[i]
        i += 1
    }
}
