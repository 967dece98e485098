import DraftDevice
import Foundation
import XCTest

/// The decode kernels on HPUDevice (through the stub) against the double-precision references of `DecodeReference`,
/// and a KV-cache decode of sequences of different lengths against full recomputation with the training kernels.
final class HPUDecodeKernelTests: XCTestCase {
    private var device: HPUDevice!
    private var random = SplitMix64(seed: 0xDEC0_DE11)

    override func setUpWithError() throws {
        device = try HPUDevice(pluginPath: try builtStubPath(), module: 0)
    }

    override func tearDown() {
        device = nil
    }

    func testRotaryAtPositionsMatchesReference() throws {
        // headDim 12: a half of 6 runs the kernels' scalar tails; positions include both ends of the table.
        for (rows, heads, headDim, maxPositions) in [(7, 3, 12, 40), (33, 9, 64, 300)] {
            let tables = DecodeReference.rotaryTables(positions: maxPositions, headDim: headDim)
            let x = random.floats(rows * heads * headDim)
            var positions = (0..<rows).map { _ in Int32.random(in: 0..<Int32(maxPositions), using: &random) }
            positions[0] = 0
            positions[rows - 1] = Int32(maxPositions - 1)
            let dx = try device.upload(x), dPositions = try device.upload(positions)
            try device.rotaryEmbedding(x: dx, positions: dPositions, cos: try device.upload(tables.cos),
                                       sin: try device.upload(tables.sin), rows: rows, heads: heads, headDim: headDim,
                                       maxPositions: maxPositions)
            let expected = DecodeReference.rotary(x, positions: positions, cos: tables.cos, sin: tables.sin,
                                                  heads: heads, headDim: headDim)
            assertClose(try device.download(dx, count: x.count), expected, "rotary at positions \(rows)x\(heads)x\(headDim)")
        }
    }

    func testKVCacheWriteScattersRowsAndKeepsTheRest() throws {
        let (slotCount, capacity, width, count) = (3, 10, 24, 6)
        let cache = random.floats(slotCount * capacity * width), rows = random.floats(count * width)
        // The last row repeats the first one's (slot, position): the later row must win.
        let slots: [Int32] = [2, 0, 1, 2, 0, 2], positions: [Int32] = [9, 0, 4, 3, 9, 9]
        let dCache = try device.upload(cache)
        try device.kvCacheWrite(rows: try device.upload(rows), cache: dCache, slots: try device.upload(slots),
                                positions: try device.upload(positions), count: count, width: width,
                                capacity: capacity, slotCount: slotCount)
        let expected = DecodeReference.cacheWrite(cache, rows: rows, slots: slots, positions: positions, width: width,
                                                  capacity: capacity)
        XCTAssertEqual(try device.download(dCache, count: cache.count), expected, "a copy is exact")
        let lastRowStart = (2 * capacity + 9) * width
        XCTAssertEqual(Array(expected[lastRowStart..<lastRowStart + width]), Array(rows[5 * width..<6 * width]))
    }

    func testAttentionOverCacheMatchesReference() throws {
        try attentionOverCacheMatchesReference(on: device)
    }

    /// The CPU backend's kernel against the same reference: head dimensions 64, 128 and 48 take its 16-lane path (48
    /// leaves a register of each pass unused), 20 its plain loops, and the lengths end in each remainder of its
    /// 4-key blocks. The last two cases have fewer (row, KV head) tasks than twice the threads, so each task's
    /// positions are split between the threads (a row at position 0 leaves one part empty).
    func testCPUAttentionOverCacheMatchesReference() throws {
        try attentionOverCacheMatchesReference(on: CPUDevice(threads: 2), extraCases: [
            (rows: 11, heads: 9, kvHeads: 3, headDim: 64, capacity: 203, slotCount: 5),
            (rows: 4, heads: 4, kvHeads: 1, headDim: 128, capacity: 70, slotCount: 2),
            (rows: 6, heads: 6, kvHeads: 3, headDim: 48, capacity: 33, slotCount: 2),
            (rows: 2, heads: 9, kvHeads: 1, headDim: 64, capacity: 700, slotCount: 2),
            (rows: 2, heads: 4, kvHeads: 1, headDim: 20, capacity: 900, slotCount: 1),
        ])
    }

    private func attentionOverCacheMatchesReference(
        on device: Device,
        extraCases: [(rows: Int, heads: Int, kvHeads: Int, headDim: Int, capacity: Int, slotCount: Int)] = []
    ) throws {
        // Small head dimension with tails, and a long context large enough for the kernel to split over threads.
        let cases = [(rows: 5, heads: 6, kvHeads: 2, headDim: 20, capacity: 50, slotCount: 4),
                     (rows: 9, heads: 8, kvHeads: 8, headDim: 64, capacity: 400, slotCount: 3)] + extraCases
        for c in cases {
            let cacheCount = c.slotCount * c.capacity * c.kvHeads * c.headDim
            let q = random.floats(c.rows * c.heads * c.headDim)
            let kCache = random.floats(cacheCount, in: -2...2), vCache = random.floats(cacheCount)
            let slots = (0..<c.rows).map { _ in Int32.random(in: 0..<Int32(c.slotCount), using: &random) }
            var positions = (0..<c.rows).map { _ in Int32.random(in: 0..<Int32(c.capacity), using: &random) }
            positions[0] = 0
            positions[1] = Int32(c.capacity - 1)
            // Lengths 1...4 more than a multiple of 4: every tail of the 4-key blocks.
            for r in 2..<min(c.rows, 6) { positions[r] = Int32(min(c.capacity - 1, 4 * (r + 3) + r - 2)) }
            let out = try device.allocate(Float.self, count: q.count)
            try device.attentionOverCache(q: try device.upload(q), kCache: try device.upload(kCache),
                                          vCache: try device.upload(vCache), out: out, slots: try device.upload(slots),
                                          positions: try device.upload(positions), rows: c.rows, heads: c.heads,
                                          kvHeads: c.kvHeads, headDim: c.headDim, capacity: c.capacity,
                                          slotCount: c.slotCount)
            let expected = DecodeReference.attentionOverCache(q: q, kCache: kCache, vCache: vCache, slots: slots,
                                                              positions: positions, heads: c.heads,
                                                              kvHeads: c.kvHeads, headDim: c.headDim,
                                                              capacity: c.capacity)
            assertClose(try device.download(out, count: q.count), expected, "attention over cache \(c) on \(device.name)")
        }
    }

    func testAddBias() throws {
        let (rows, width) = (13, 75)
        let x = random.floats(rows * width), bias = random.floats(width)
        let dx = try device.upload(x)
        try device.addBias(x: dx, bias: try device.upload(bias), rows: rows, width: width)
        assertClose(try device.download(dx, count: x.count),
                    (0..<x.count).map { Double(x[$0]) + Double(bias[$0 % width]) }, "addBias")
    }

    /// Three sequences of lengths 5, 12 and 9 in slots 2, 0 and 1: a batched prefill of 3, 7 and 1 tokens, then
    /// one token per unfinished sequence per step, every step's rows in one launch. Each token's attention output
    /// must equal the training path's (rope by sequence index, causal attention over the whole sequence).
    func testKVCacheDecodeMatchesFullRecomputation() throws {
        let (heads, kvHeads, headDim, capacity) = (4, 2, 16, 16)
        let lengths = [5, 12, 9], slotOf: [Int32] = [2, 0, 1], prefill = [3, 7, 1]
        let slotCount = 3, qWidth = heads * headDim, kvWidth = kvHeads * headDim
        let tables = DecodeReference.rotaryTables(positions: capacity, headDim: headDim)
        let cosTable = try device.upload(tables.cos), sinTable = try device.upload(tables.sin)
        let q = lengths.map { random.floats($0 * qWidth) }
        let k = lengths.map { random.floats($0 * kvWidth) }, v = lengths.map { random.floats($0 * kvWidth) }

        // Full recomputation, one sequence at a time with the training kernels.
        var full: [[Float]] = []
        for (s, length) in lengths.enumerated() {
            let dq = try device.upload(q[s]), dk = try device.upload(k[s]), dv = try device.upload(v[s])
            try device.rotaryEmbedding(x: dq, cos: cosTable, sin: sinTable, batch: 1, seqLen: length, heads: heads,
                                       headDim: headDim, inverse: false)
            try device.rotaryEmbedding(x: dk, cos: cosTable, sin: sinTable, batch: 1, seqLen: length,
                                       heads: kvHeads, headDim: headDim, inverse: false)
            let out = try device.allocate(Float.self, count: length * qWidth)
            let lse = try device.allocate(Float.self, count: heads * length)
            try device.attentionForward(q: dq, k: dk, v: dv, out: out, lse: lse, batch: 1, seqLen: length,
                                        heads: heads, kvHeads: kvHeads, headDim: headDim)
            full.append(try device.download(out, count: length * qWidth))
        }

        // The cache path.
        let kCache = try device.allocate(Float.self, count: slotCount * capacity * kvWidth)
        let vCache = try device.allocate(Float.self, count: slotCount * capacity * kvWidth)
        var decoded = lengths.map { [Float](repeating: .nan, count: $0 * qWidth) }
        var done = [Int](repeating: 0, count: lengths.count)
        var steps = 0
        while zip(done, lengths).contains(where: { $0 < $1 }) {
            var tokens: [(sequence: Int, position: Int)] = []
            for s in lengths.indices where done[s] < lengths[s] {
                let take = steps == 0 ? prefill[s] : 1
                tokens += (done[s]..<done[s] + take).map { (s, $0) }
                done[s] += take
            }
            steps += 1
            let rows = tokens.count
            let slots = tokens.map { slotOf[$0.sequence] }, positions = tokens.map { Int32($0.position) }
            let dSlots = try device.upload(slots), dPositions = try device.upload(positions)
            let rowsOf = { (source: [[Float]], width: Int) in
                tokens.flatMap { source[$0.sequence][$0.position * width..<($0.position + 1) * width] }
            }
            let dq = try device.upload(rowsOf(q, qWidth)), dk = try device.upload(rowsOf(k, kvWidth))
            let dv = try device.upload(rowsOf(v, kvWidth))
            try device.rotaryEmbedding(x: dq, positions: dPositions, cos: cosTable, sin: sinTable, rows: rows,
                                       heads: heads, headDim: headDim, maxPositions: capacity)
            try device.rotaryEmbedding(x: dk, positions: dPositions, cos: cosTable, sin: sinTable, rows: rows,
                                       heads: kvHeads, headDim: headDim, maxPositions: capacity)
            try device.kvCacheWrite(rows: dk, cache: kCache, slots: dSlots, positions: dPositions, count: rows,
                                    width: kvWidth, capacity: capacity, slotCount: slotCount)
            try device.kvCacheWrite(rows: dv, cache: vCache, slots: dSlots, positions: dPositions, count: rows,
                                    width: kvWidth, capacity: capacity, slotCount: slotCount)
            let out = try device.allocate(Float.self, count: rows * qWidth)
            try device.attentionOverCache(q: dq, kCache: kCache, vCache: vCache, out: out, slots: dSlots,
                                          positions: dPositions, rows: rows, heads: heads, kvHeads: kvHeads,
                                          headDim: headDim, capacity: capacity, slotCount: slotCount)
            let result = try device.download(out, count: rows * qWidth)
            for (row, token) in tokens.enumerated() {
                decoded[token.sequence].replaceSubrange(token.position * qWidth..<(token.position + 1) * qWidth,
                                                        with: result[row * qWidth..<(row + 1) * qWidth])
            }
        }
        XCTAssertEqual(steps, 1 + 8, "one prefill, then single tokens until the last sequence (9 - 1 tokens left) ends")

        for s in lengths.indices {
            assertClose(decoded[s], full[s].map(Double.init), "sequence \(s) (length \(lengths[s])): cache vs full")
            // Both against arithmetic neither backend shares.
            let positions = (0..<lengths[s]).map(Int32.init)
            let qRotated = DecodeReference.rotary(q[s], positions: positions, cos: tables.cos, sin: tables.sin,
                                                  heads: heads, headDim: headDim).map { Float($0) }
            let kRotated = DecodeReference.rotary(k[s], positions: positions, cos: tables.cos, sin: tables.sin,
                                                  heads: kvHeads, headDim: headDim).map { Float($0) }
            let reference = DecodeReference.causalAttention(q: qRotated, k: kRotated, v: v[s], seqLen: lengths[s],
                                                            heads: heads, kvHeads: kvHeads, headDim: headDim)
            assertClose(decoded[s], reference, "sequence \(s): cache vs double reference")
        }
    }
}
