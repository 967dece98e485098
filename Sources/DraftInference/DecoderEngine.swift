import DraftDevice
import DraftErrors
import DraftModel
import Foundation

/// New tokens of one sequence for a forward: they occupy positions `start..<start + tokens.count` of cache slot
/// `slot`. `start` is at most the slot's current length (less overwrites: speculative rollback).
public struct SequenceChunk: Sendable {
    public var slot: Int
    public var tokens: [Int32]
    public var start: Int

    public init(slot: Int, tokens: [Int32], start: Int) {
        self.slot = slot
        self.tokens = tokens
        self.start = start
    }
}

/// Which rows' logits a forward returns.
public enum LogitSelection: Sendable {
    /// The last row of each chunk: the next-token distribution (generation).
    case lastRow
    /// Every row of every chunk, in order (scoring, speculative verification).
    case allRows
}

/// Logits of the rows a forward was asked for, on the host: `rowCount` rows of `vocab`, valid until the engine's
/// next forward or its release (the buffer is the engine's and is reused, so steady-state decoding allocates nothing
/// per token). Copy rows out before letting the engine go: a value of this type does not keep it alive.
public struct ForwardLogits {
    public let vocab: Int
    public let rowCount: Int
    /// Index of chunk `c`'s first returned row (`.lastRow`: exactly row `c`).
    public let firstRow: [Int]
    let base: UnsafePointer<Float>

    public func row(_ index: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: base + index * vocab, count: vocab)
    }
}

/// The forward pass for inference over `DecoderWeights`, on any `Device`: one layer implementation for drafts (fp32
/// weights, any backend) and targets (quantized weights, through the device's quantized products).
///
/// A forward takes chunks of several sequences, each at its own position, and runs them as one set of rows: the
/// matrix products see every row of every sequence at once (prefill is a matrix product over the prompt's rows, batched
/// decode one over the batch's), while rotary positions, the KV-cache writes and attention are per row. Rows are
/// processed in passes of at most `maxRows`, in order, so a long prompt only needs scratch for `maxRows` rows: a later
/// pass's rows attend over the keys an earlier pass wrote.
public final class DecoderEngine {
    public let config: DecoderConfig
    public let weights: DecoderWeights
    public let device: any Device
    public let maxRows: Int
    /// LM-head rows per product: bounds the device logits buffer (64 x 49k floats = 12.6 MB).
    public let headRows: Int

    private let ropeCos, ropeSin: DevicePointer<Float>  // (contextLength, headDim/2)
    // Activations, (maxRows, width) each.
    private let x, norm, rstd, q, k, v, attention, projected, gate, up, act: DevicePointer<Float>
    private let headInput, headNormed, headRstd, logits: DevicePointer<Float>  // (headRows, dim) x2 / (headRows) / (headRows, vocab)
    private let tokens, slots, positions: DevicePointer<Int32>
    private var hostTokens, hostSlots, hostPositions: [Int32]
    private var hostLogits: UnsafeMutablePointer<Float>
    private var hostLogitRows = 0
    private var owned: [DevicePointer<Float>] = []
    /// With a subset head: its rows gathered once at init (`(K, dim)`; the weights are fixed while the engine runs),
    /// and host scratch for a chunk's `(headRows, K)` logits before they are spread over the full vocabulary.
    private var subsetHead: (ids: [Int32], weight: LinearWeight, scores: UnsafeMutablePointer<Float>)?
    /// A quantized subset head's gathered rows (host memory the engine owns), and what the device made of them.
    private var subsetHeadBytes: UnsafeMutableRawPointer?
    private var subsetHeadPrepared: AnyObject?

    public init(config: DecoderConfig, weights: DecoderWeights, device: any Device, maxRows: Int = 256,
                headRows: Int = 64) throws {
        guard config.layers == weights.layers.count else {
            throw InputError("model: config has \(config.layers) layers but the weights have \(weights.layers.count)")
        }
        guard config.heads > 0, config.kvHeads > 0, config.heads % config.kvHeads == 0, config.headDim % 2 == 0,
              config.ropeInverseFrequencies.count == config.headDim / 2 else {
            throw InputError("model: heads \(config.heads), kv_heads \(config.kvHeads), head dim \(config.headDim) and \(config.ropeInverseFrequencies.count) rotary frequencies do not fit together")
        }
        self.config = config
        self.weights = try weights.prepared(for: device)
        self.device = device
        self.maxRows = max(1, maxRows)
        self.headRows = max(1, headRows)
        let n = self.maxRows, qWidth = config.heads * config.headDim, kvWidth = config.kvHeads * config.headDim
        var owned: [DevicePointer<Float>] = []
        func buffer(_ count: Int) throws -> DevicePointer<Float> {
            let p = try device.allocate(Float.self, count: count)
            owned.append(p)
            return p
        }
        do {
            let (cosTable, sinTable) = RotaryTables.tables(inverseFrequencies: config.ropeInverseFrequencies,
                                                           positions: config.contextLength)
            let cosPointer = try buffer(cosTable.count), sinPointer = try buffer(sinTable.count)
            try cosTable.withUnsafeBufferPointer { try device.copyToDevice($0, cosPointer) }
            try sinTable.withUnsafeBufferPointer { try device.copyToDevice($0, sinPointer) }
            ropeCos = cosPointer
            ropeSin = sinPointer
            x = try buffer(n * config.dim)
            norm = try buffer(n * config.dim)
            rstd = try buffer(n)
            q = try buffer(n * qWidth)
            k = try buffer(n * kvWidth)
            v = try buffer(n * kvWidth)
            attention = try buffer(n * qWidth)
            projected = try buffer(n * config.dim)
            gate = try buffer(n * config.ffnDim)
            up = try buffer(n * config.ffnDim)
            act = try buffer(n * config.ffnDim)
            headInput = try buffer(self.headRows * config.dim)
            headNormed = try buffer(self.headRows * config.dim)
            headRstd = try buffer(self.headRows)
            if let ids = weights.headIDs {
                guard weights.head.rows == config.vocabSize, let last = ids.last, Int(last) < config.vocabSize,
                      ids.count < config.vocabSize else {
                    throw InputError("model: a subset head of \(ids.count) ids needs a head of vocab_size \(config.vocabSize) rows")
                }
                let compact: LinearWeight
                switch weights.head {
                case .dense(let table, let rows, let dim):
                    let rowsOnDevice = try buffer(ids.count * dim)
                    let idsOnDevice = try device.upload(ids)
                    defer { device.free(idsOnDevice) }
                    try device.embeddingForward(tokens: idsOnDevice, table: table, out: rowsOnDevice, count: ids.count,
                                                dim: dim, vocab: rows)
                    compact = .dense(rowsOnDevice, rows: ids.count, columns: dim)
                case .quantized(let table):
                    // Quantized rows are independent blocks: the subset's rows are copied whole, never re-encoded.
                    let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(ids.count * table.rowBytes, 1),
                                                                 alignment: 64)
                    for (j, id) in ids.enumerated() {
                        (bytes + j * table.rowBytes).copyMemory(from: table.data + Int(id) * table.rowBytes,
                                                                byteCount: table.rowBytes)
                    }
                    subsetHeadBytes = bytes
                    let prepared = try device.prepareForProducts(
                        QuantizedMatrix(type: table.type, rows: ids.count, columns: table.columns,
                                        data: UnsafeRawPointer(bytes)))
                    subsetHeadPrepared = prepared.owner
                    compact = .quantized(prepared.matrix)
                }
                subsetHead = (ids, compact, .allocate(capacity: self.headRows * ids.count))
            }
            logits = try buffer(self.headRows * (weights.headIDs?.count ?? config.vocabSize))
            tokens = try device.allocate(Int32.self, count: n)
            slots = try device.allocate(Int32.self, count: n)
            positions = try device.allocate(Int32.self, count: n)
        } catch {
            owned.forEach { device.free($0) }
            throw error
        }
        self.owned = owned
        hostTokens = [Int32](repeating: 0, count: n)
        hostSlots = hostTokens
        hostPositions = hostTokens
        hostLogits = .allocate(capacity: 1)
    }

    deinit {
        owned.forEach { device.free($0) }
        device.free(tokens)
        device.free(slots)
        device.free(positions)
        hostLogits.deallocate()
        subsetHead?.scores.deallocate()
        subsetHeadBytes?.deallocate()
    }

    /// Runs `chunks` through the model, appending their keys and values to `cache`, and returns the logits `select`
    /// asks for. Each slot may appear once.
    public func forward(_ chunks: [SequenceChunk], cache: KVCache, select: LogitSelection) throws -> ForwardLogits {
        try validate(chunks, cache: cache)
        var firstRow: [Int] = []
        firstRow.reserveCapacity(chunks.count)
        var outputRows = 0
        for chunk in chunks {
            firstRow.append(outputRows)
            outputRows += select == .lastRow ? 1 : chunk.tokens.count
        }
        reserveHostLogits(rows: outputRows)

        // Cut the chunks' rows into passes of at most maxRows; a chunk may span passes.
        var pass: [(chunk: Int, range: Range<Int>)] = []
        var passRows = 0
        var written = 0
        for (c, chunk) in chunks.enumerated() {
            var offset = 0
            while offset < chunk.tokens.count {
                let take = min(chunk.tokens.count - offset, maxRows - passRows)
                pass.append((c, offset..<(offset + take)))
                passRows += take
                offset += take
                if passRows == maxRows {
                    written = try run(pass: pass, chunks: chunks, cache: cache, select: select, outputRow: written)
                    pass.removeAll(keepingCapacity: true)
                    passRows = 0
                }
            }
        }
        if passRows > 0 {
            written = try run(pass: pass, chunks: chunks, cache: cache, select: select, outputRow: written)
        }
        for chunk in chunks { cache.didWrite(slot: chunk.slot, end: chunk.start + chunk.tokens.count) }
        return ForwardLogits(vocab: config.vocabSize, rowCount: outputRows, firstRow: firstRow,
                             base: UnsafePointer(hostLogits))
    }

    private func validate(_ chunks: [SequenceChunk], cache: KVCache) throws {
        guard cache.layers == config.layers, cache.kvHeads == config.kvHeads, cache.headDim == config.headDim,
              cache.capacity <= config.contextLength else {
            throw InputError("KV cache of \(cache.layers) layers x \(cache.kvHeads) kv heads x \(cache.headDim) (capacity \(cache.capacity)) does not fit the model (\(config.layers) x \(config.kvHeads) x \(config.headDim), context \(config.contextLength))")
        }
        var seen = Set<Int>()
        for chunk in chunks {
            try cache.checkSlot(chunk.slot)
            guard seen.insert(chunk.slot).inserted else {
                throw InputError("forward: slot \(chunk.slot) appears twice in one batch")
            }
            guard !chunk.tokens.isEmpty else { throw InputError("forward: slot \(chunk.slot) has no tokens") }
            guard chunk.start >= 0, chunk.start <= cache.lengths[chunk.slot] else {
                throw InputError("forward: slot \(chunk.slot) holds \(cache.lengths[chunk.slot]) positions; cannot continue at \(chunk.start)")
            }
            guard chunk.start + chunk.tokens.count <= cache.capacity else {
                throw InputError("a sequence of \(chunk.start + chunk.tokens.count) tokens is longer than the context of \(cache.capacity)")
            }
            if let bad = chunk.tokens.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw InputError("token id \(bad) is outside the model's vocabulary of \(config.vocabSize)")
            }
        }
    }

    private func reserveHostLogits(rows: Int) {
        guard rows > hostLogitRows else { return }
        hostLogits.deallocate()
        hostLogits = .allocate(capacity: rows * config.vocabSize)
        hostLogitRows = rows
    }

    /// One pass over the layers for the rows of `pass`; copies its output rows' logits to the host from row
    /// `outputRow` on and returns the next free output row.
    private func run(pass: [(chunk: Int, range: Range<Int>)], chunks: [SequenceChunk], cache: KVCache,
                     select: LogitSelection, outputRow: Int) throws -> Int {
        let c = config, qWidth = c.heads * c.headDim, kvWidth = c.kvHeads * c.headDim
        // Rows of this pass, and which of them the caller wants logits for.
        var n = 0
        var wanted: [Int] = []
        for (index, range) in pass {
            let chunk = chunks[index]
            for offset in range {
                hostTokens[n] = chunk.tokens[offset]
                hostSlots[n] = Int32(chunk.slot)
                hostPositions[n] = Int32(chunk.start + offset)
                if select == .allRows || offset == chunk.tokens.count - 1 { wanted.append(n) }
                n += 1
            }
        }
        try hostTokens.withUnsafeBufferPointer { try device.copyToDevice(UnsafeBufferPointer(rebasing: $0[0..<n]), tokens) }
        try hostSlots.withUnsafeBufferPointer { try device.copyToDevice(UnsafeBufferPointer(rebasing: $0[0..<n]), slots) }
        try hostPositions.withUnsafeBufferPointer {
            try device.copyToDevice(UnsafeBufferPointer(rebasing: $0[0..<n]), positions)
        }

        switch weights.embedding {
        case .dense(let table, let vocab, let dim):
            try device.embeddingForward(tokens: tokens, table: table, out: x, count: n, dim: dim, vocab: vocab)
        case .quantized(let table):
            try device.quantizedEmbedding(tokens: tokens, table: table, out: x, count: n)
        }
        let eps = c.normEps
        for (l, w) in weights.layers.enumerated() {
            try device.rmsNormForward(x: x, weight: w.inputNorm, out: norm, rstd: rstd, rows: n, dim: c.dim, eps: eps)
            try linear(norm, w.q, q, rows: n)
            try linear(norm, w.k, k, rows: n)
            try linear(norm, w.v, v, rows: n)
            if let bias = w.qBias { try device.addBias(x: q, bias: bias, rows: n, width: qWidth) }
            if let bias = w.kBias { try device.addBias(x: k, bias: bias, rows: n, width: kvWidth) }
            if let bias = w.vBias { try device.addBias(x: v, bias: bias, rows: n, width: kvWidth) }
            try device.rotaryEmbedding(x: q, positions: positions, cos: ropeCos, sin: ropeSin, rows: n, heads: c.heads,
                                       headDim: c.headDim, maxPositions: c.contextLength)
            try device.rotaryEmbedding(x: k, positions: positions, cos: ropeCos, sin: ropeSin, rows: n,
                                       heads: c.kvHeads, headDim: c.headDim, maxPositions: c.contextLength)
            try device.kvCacheWrite(rows: k, cache: cache.keys[l], slots: slots, positions: positions, count: n,
                                    width: kvWidth, capacity: cache.capacity, slotCount: cache.slotCount)
            try device.kvCacheWrite(rows: v, cache: cache.values[l], slots: slots, positions: positions, count: n,
                                    width: kvWidth, capacity: cache.capacity, slotCount: cache.slotCount)
            try device.attentionOverCache(q: q, kCache: cache.keys[l], vCache: cache.values[l], out: attention,
                                          slots: slots, positions: positions, rows: n, heads: c.heads,
                                          kvHeads: c.kvHeads, headDim: c.headDim, capacity: cache.capacity,
                                          slotCount: cache.slotCount)
            try linear(attention, w.o, projected, rows: n)
            try device.add(x, projected, x, count: n * c.dim)
            try device.rmsNormForward(x: x, weight: w.postNorm, out: norm, rstd: rstd, rows: n, dim: c.dim, eps: eps)
            try linear(norm, w.gate, gate, rows: n)
            try linear(norm, w.up, up, rows: n)
            try device.swigluForward(gate: gate, up: up, out: act, count: n * c.ffnDim)
            try linear(act, w.down, projected, rows: n)
            try device.add(x, projected, x, count: n * c.dim)
        }

        // Final norm and LM head over the wanted rows only: generation needs one row per sequence of the pass.
        var next = outputRow
        var start = 0
        while start < wanted.count {
            let rows = min(headRows, wanted.count - start)
            for i in 0..<rows {
                try device.copy(x.advanced(by: wanted[start + i] * c.dim), headInput.advanced(by: i * c.dim),
                                count: c.dim)
            }
            try device.rmsNormForward(x: headInput, weight: weights.finalNorm, out: headNormed, rstd: headRstd,
                                      rows: rows, dim: c.dim, eps: eps)
            if let subset = subsetHead {
                let k = subset.ids.count
                try linear(headNormed, subset.weight, logits, rows: rows)
                try device.copyToHost(logits, UnsafeMutableBufferPointer(start: subset.scores, count: rows * k))
                for r in 0..<rows {
                    let out = hostLogits + (next + r) * c.vocabSize, scores = subset.scores + r * k
                    out.update(repeating: -.infinity, count: c.vocabSize)
                    for j in 0..<k { out[Int(subset.ids[j])] = scores[j] }
                }
            } else {
                try linear(headNormed, weights.head, logits, rows: rows)
                try device.copyToHost(logits, UnsafeMutableBufferPointer(start: hostLogits + next * c.vocabSize,
                                                                          count: rows * c.vocabSize))
            }
            next += rows
            start += rows
        }
        return next
    }

    /// `y (rows x out) = x (rows x in) * W^T`, fp32 through `gemm` or quantized through the device's product.
    private func linear(_ x: DevicePointer<Float>, _ weight: LinearWeight, _ y: DevicePointer<Float>,
                        rows: Int) throws {
        switch weight {
        case .dense(let w, let out, let inner):
            try device.gemm(transA: false, transB: true, m: rows, n: out, k: inner, alpha: 1, a: x, lda: inner,
                            b: w, ldb: inner, beta: 0, c: y, ldc: out)
        case .quantized(let matrix):
            try device.quantizedLinear(x: x, weight: matrix, y: y, m: rows)
        }
    }
}
