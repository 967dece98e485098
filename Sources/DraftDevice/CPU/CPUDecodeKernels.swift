import Foundation

/// The fp32 inference kernels on the CPU: rotary embedding at per-row positions, KV-cache writes, attention of new
/// rows over the cache, and bias addition. The quantized products live with the quantized block types.
///
/// Attention over the cache runs one task per (query row, KV head): the query heads sharing a KV head read each cached
/// key and value row once for the whole group, which is what bounds decode (the cache is read, not computed on).
/// Softmax is two passes over a per-task score buffer (scores, then `exp` and the weighted sum of values), exact to
/// float rounding like the training kernel. With fewer tasks than twice the threads (batch-1 decode) each task's
/// positions are split between the threads instead (`CacheAttentionGeometry.splitOverPositions`).
extension CPUDevice {
    public func rotaryEmbedding(x: DevicePointer<Float>, positions: DevicePointer<Int32>, cos: DevicePointer<Float>,
                                sin: DevicePointer<Float>, rows: Int, heads: Int, headDim: Int,
                                maxPositions: Int) throws {
        let x = host(x), positions = host(positions), cosTable = host(cos), sinTable = host(sin)
        try CPUDecodeKernelsValidation.positions(positions, count: rows, below: maxPositions, kernel: "rotary")
        let half = headDim / 2
        parallelChunks(rows, threads: threads, grain: max(1, 4096 / max(heads * headDim, 1))) { _, range in
            for r in range {
                let t = Int(positions[r])
                let c = cosTable + t * half, s = sinTable + t * half
                for h in 0..<heads {
                    let v = x + (r * heads + h) * headDim
                    var i = 0
                    while i + 8 <= half {
                        let x1 = loadVec(v + i), x2 = loadVec(v + i + half)
                        let cv = loadVec(c + i), sv = loadVec(s + i)
                        storeVec(x1 * cv - x2 * sv, v + i)
                        storeVec(x2 * cv + x1 * sv, v + i + half)
                        i += 8
                    }
                    while i < half {
                        let x1 = v[i], x2 = v[i + half]
                        v[i] = x1 * c[i] - x2 * s[i]
                        v[i + half] = x2 * c[i] + x1 * s[i]
                        i += 1
                    }
                }
            }
        }
    }

    public func kvCacheWrite(rows: DevicePointer<Float>, cache: DevicePointer<Float>, slots: DevicePointer<Int32>,
                             positions: DevicePointer<Int32>, count: Int, width: Int, capacity: Int,
                             slotCount: Int) throws {
        let source = host(rows), cache = host(cache), slots = host(slots), positions = host(positions)
        try CPUDecodeKernelsValidation.slots(slots, count: count, below: slotCount, kernel: "kv_cache_write")
        try CPUDecodeKernelsValidation.positions(positions, count: count, below: capacity, kernel: "kv_cache_write")
        for r in 0..<count {
            let destination = cache + (Int(slots[r]) * capacity + Int(positions[r])) * width
            destination.update(from: source + r * width, count: width)
        }
    }

    public func attentionOverCache(q: DevicePointer<Float>, kCache: DevicePointer<Float>, vCache: DevicePointer<Float>,
                                   out: DevicePointer<Float>, slots: DevicePointer<Int32>,
                                   positions: DevicePointer<Int32>, rows: Int, heads: Int, kvHeads: Int,
                                   headDim: Int, capacity: Int, slotCount: Int) throws {
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw DeviceError(.invalidArgument, "attention_over_cache: heads \(heads) is not a multiple of kv_heads \(kvHeads)")
        }
        let q = host(q), kCache = host(kCache), vCache = host(vCache), out = host(out)
        let slots = host(slots), positions = host(positions)
        try CPUDecodeKernelsValidation.slots(slots, count: rows, below: slotCount, kernel: "attention_over_cache")
        try CPUDecodeKernelsValidation.positions(positions, count: rows, below: capacity,
                                                 kernel: "attention_over_cache")
        let group = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        // Below about 64k multiply-adds a second thread costs more to start than it saves (batch-1 decode of a draft).
        var work = 0
        for r in 0..<rows { work += (Int(positions[r]) + 1) * heads * headDim }
        let threadCount = work < 1 << 16 ? 1 : threads
        let geometry = CacheAttentionGeometry(q: q, kCache: kCache, vCache: vCache, out: out, slots: slots,
                                              positions: positions, kvHeads: kvHeads, group: group,
                                              headDim: headDim, capacity: capacity, scale: scale)
        if threadCount > 1 && rows * kvHeads < 2 * threadCount {
            geometry.splitOverPositions(rows: rows, threads: threadCount)
            return
        }
        parallelChunks(rows * kvHeads, threads: threadCount, grain: 1) { _, tasks in
            // Scores of the group's heads over the longest row of this chunk.
            var longest = 0
            for task in tasks { longest = max(longest, Int(positions[task / kvHeads]) + 1) }
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * longest)
            defer { scores.deallocate() }
            for task in tasks {
                let r = task / kvHeads, g = task % kvHeads
                let head = geometry.head(row: r, kvHead: g, positions: 0..<(Int(positions[r]) + 1))
                head.scores(queries: geometry.queries(row: r, kvHead: g), heads: group, scale: scale, into: scores)
                for h in 0..<group {
                    let row = scores + h * head.length
                    let maximum = rowMax(row, length: head.length)
                    let sum = expInPlace(row, length: head.length, shift: maximum)
                    scaleInPlace(row, length: head.length, by: 1 / sum)
                }
                head.weightedValues(weights: scores, heads: group, into: geometry.outputs(row: r, kvHead: g))
            }
        }
    }

    public func addBias(x: DevicePointer<Float>, bias: DevicePointer<Float>, rows: Int, width: Int) throws {
        let x = host(x), bias = host(bias)
        for r in 0..<rows {
            let row = x + r * width
            var i = 0
            while i + 8 <= width {
                storeVec(loadVec(row + i) + loadVec(bias + i), row + i)
                i += 8
            }
            while i < width {
                row[i] += bias[i]
                i += 1
            }
        }
    }
}

/// Index checks shared by the decode kernels: a slot or position outside the cache would read or write another
/// sequence's memory, so it is an error, never a clamp.
enum CPUDecodeKernelsValidation {
    static func slots(_ slots: UnsafePointer<Int32>, count: Int, below slotCount: Int, kernel: String) throws {
        for r in 0..<count where slots[r] < 0 || Int(slots[r]) >= slotCount {
            throw DeviceError(.invalidArgument, "\(kernel): row \(r) names slot \(slots[r]), outside 0..<\(slotCount)")
        }
    }

    static func positions(_ positions: UnsafePointer<Int32>, count: Int, below limit: Int, kernel: String) throws {
        for r in 0..<count where positions[r] < 0 || Int(positions[r]) >= limit {
            throw DeviceError(.invalidArgument, "\(kernel): row \(r) is at position \(positions[r]), outside 0..<\(limit)")
        }
    }
}
