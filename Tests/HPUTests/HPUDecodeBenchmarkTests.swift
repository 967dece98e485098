import DraftDevice
import Foundation
import XCTest

/// Timings of the stub's decode kernels at SmolLM2-135M's attention shape (9 query heads, 3 KV heads, headDim 64),
/// for a batch of 8 sequences. Opt-in, in release: `SWIFTDRAFT_DECODE_BENCH=1 swift test -c release --filter
/// HPUDecodeBenchmark`, with `HPU_STUB_THREADS=1` for single-thread figures. It prints figures; the only assertion
/// is that the kernels run.
final class HPUDecodeBenchmarkTests: XCTestCase {
    func testDecodeKernelTimings() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SWIFTDRAFT_DECODE_BENCH"] == "1",
                          "set SWIFTDRAFT_DECODE_BENCH=1 (and -c release) to time the decode kernels")
        // $SWIFTDRAFT_HPU_PLUGIN times another plugin (or another build of the stub) instead.
        let plugin = try ProcessInfo.processInfo.environment["SWIFTDRAFT_HPU_PLUGIN"] ?? builtStubPath()
        let device = try HPUDevice(pluginPath: plugin, module: 0)
        var random = SplitMix64(seed: 42)
        let (heads, kvHeads, headDim, capacity, slotCount) = (9, 3, 64, 2048, 8)
        let kvWidth = kvHeads * headDim, qWidth = heads * headDim
        let cacheCount = slotCount * capacity * kvWidth
        let kCache = try device.upload(random.floats(cacheCount)), vCache = try device.upload(random.floats(cacheCount))
        let tables = DecodeReference.rotaryTables(positions: capacity, headDim: headDim)
        let cosTable = try device.upload(tables.cos), sinTable = try device.upload(tables.sin)

        /// Median seconds of `body` over `repeats` runs, each synchronised: the calling thread's CPU time, which on
        /// a shared machine is steadier than wall time. With `HPU_STUB_THREADS=1` (as the figures in the report were
        /// taken) the stub runs every kernel on the calling thread, so this is the kernel's whole cost.
        func time(_ repeats: Int, _ body: () throws -> Void) throws -> Double {
            func cpuNow() -> Double {
                var spec = timespec()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
                return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
            }
            try body()
            try device.synchronize()
            var samples: [Double] = []
            for _ in 0..<repeats {
                let start = cpuNow()
                try body()
                try device.synchronize()
                samples.append(cpuNow() - start)
            }
            return samples.sorted()[repeats / 2]
        }

        print("decode kernels on \(device.name), heads \(heads), kvHeads \(kvHeads), headDim \(headDim)")
        // The stub's own memory bandwidth here, as a reference for the memory-bound decode kernels: a DRAM-to-DRAM
        // copy of one whole cache (reads and writes counted).
        do {
            let scratch = try device.allocate(Float.self, count: cacheCount)
            let seconds = try time(5) { try device.copy(kCache, scratch, count: cacheCount) }
            print(String(format: "reference: copy of a %.1f MB cache: %8.1f us, %5.1f GB/s read + written",
                         Double(cacheCount * 4) / 1e6, seconds * 1e6, Double(2 * cacheCount * 4) / seconds / 1e9))
        }
        // One decode step: 8 rows, each at the end of a context of `context` tokens in its own slot.
        for context in [128, 512, 2048] {
            let rows = slotCount
            let slots = try device.upload((0..<rows).map(Int32.init))
            let positions = try device.upload([Int32](repeating: Int32(context - 1), count: rows))
            let q = try device.upload(random.floats(rows * qWidth))
            let out = try device.allocate(Float.self, count: rows * qWidth)
            let seconds = try time(21) {
                try device.attentionOverCache(q: q, kCache: kCache, vCache: vCache, out: out, slots: slots,
                                              positions: positions, rows: rows, heads: heads, kvHeads: kvHeads,
                                              headDim: headDim, capacity: capacity, slotCount: slotCount)
            }
            let cacheBytes = Double(2 * rows * context * kvWidth * 4)
            print(String(format: "attentionOverCache decode: 8 rows at context %4d: %8.1f us, %5.1f GB/s of K/V read",
                         context, seconds * 1e6, cacheBytes / seconds / 1e9))
        }
        // The CPU backend's kernel on one thread at the same decode shapes, for scale (its own caches; in a debug
        // build its Swift is unoptimised while the stub's C is always -O2, so compare only under -c release).
        do {
            let cpu = CPUDevice(threads: 1)
            let cpuK = try cpu.upload(random.floats(cacheCount)), cpuV = try cpu.upload(random.floats(cacheCount))
            for context in [128, 512, 2048] {
                let rows = slotCount
                let slots = try cpu.upload((0..<rows).map(Int32.init))
                let positions = try cpu.upload([Int32](repeating: Int32(context - 1), count: rows))
                let q = try cpu.upload(random.floats(rows * qWidth))
                let out = try cpu.allocate(Float.self, count: rows * qWidth)
                let seconds = try time(21) {
                    try cpu.attentionOverCache(q: q, kCache: cpuK, vCache: cpuV, out: out, slots: slots,
                                               positions: positions, rows: rows, heads: heads, kvHeads: kvHeads,
                                               headDim: headDim, capacity: capacity, slotCount: slotCount)
                }
                print(String(format: "CPUDevice (1 thread) attentionOverCache decode: 8 rows at context %4d: %8.1f us",
                             context, seconds * 1e6))
            }
        }
        // A prefill: 8 sequences of 256 tokens, every token over its own prefix.
        do {
            let length = 256, rows = slotCount * length
            let slots = try device.upload((0..<rows).map { Int32($0 / length) })
            let positions = try device.upload((0..<rows).map { Int32($0 % length) })
            let q = try device.upload(random.floats(rows * qWidth))
            let out = try device.allocate(Float.self, count: rows * qWidth)
            let seconds = try time(5) {
                try device.attentionOverCache(q: q, kCache: kCache, vCache: vCache, out: out, slots: slots,
                                              positions: positions, rows: rows, heads: heads, kvHeads: kvHeads,
                                              headDim: headDim, capacity: capacity, slotCount: slotCount)
            }
            let flops = Double(4 * slotCount * heads * headDim * (length * (length + 1) / 2))
            print(String(format: "attentionOverCache prefill: 8 x %d tokens: %8.1f us, %5.1f GFLOP/s",
                         length, seconds * 1e6, flops / seconds / 1e9))
        }
        // Rotary, cache write and bias for the rows of one decode step and of a 2048-row prefill.
        for rows in [8, 2048] {
            let positions = try device.upload((0..<rows).map { Int32($0 % capacity) })
            let slots = try device.upload((0..<rows).map { Int32($0 % slotCount) })
            let x = try device.upload(random.floats(rows * qWidth)), k = try device.upload(random.floats(rows * kvWidth))
            let bias = try device.upload(random.floats(qWidth))
            let rope = try time(21) {
                try device.rotaryEmbedding(x: x, positions: positions, cos: cosTable, sin: sinTable, rows: rows,
                                           heads: heads, headDim: headDim, maxPositions: capacity)
            }
            let write = try time(21) {
                try device.kvCacheWrite(rows: k, cache: kCache, slots: slots, positions: positions, count: rows,
                                        width: kvWidth, capacity: capacity, slotCount: slotCount)
            }
            let biasTime = try time(21) { try device.addBias(x: x, bias: bias, rows: rows, width: qWidth) }
            print(String(format: "%4d rows: rotary (9 heads) %7.1f us, kvCacheWrite (192 wide) %7.1f us, addBias (576 wide) %7.1f us",
                         rows, rope * 1e6, write * 1e6, biasTime * 1e6))
        }
    }
}
