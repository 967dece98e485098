import DraftFormats
import Foundation

/// Activation rows from which products on weights without interleaved rows switch from the row kernels to the 16-bit
/// GEMM (integer modes) or to fp32 panels and `sgemm` (placed by `quant-bench --sweep`, run under each setting of
/// `SWIFTDRAFT_QUANT_PANEL_FROM`, which overrides it).
let quantizedPanelCrossover: Int = {
    if let value = ProcessInfo.processInfo.environment["SWIFTDRAFT_QUANT_PANEL_FROM"], let n = Int(value), n > 0 {
        return n
    }
    return 16
}()

/// Activation rows from which products on interleaved weights (`prepareForProducts`) leave the interleaved kernel for
/// the 16-bit GEMM. The interleaved kernel widens each weight block again per 4 activation rows where the GEMM widens
/// it once per product, yet its layout saves the GEMM's transposes: `quant-bench --sweep` (three alternated rounds on
/// SmolLM2's layers, ms per row) had it ahead at 16-32 rows (0.74-0.86 against 1.55-1.71 at 16) and level from 64
/// (0.65-1.19 both ways). `SWIFTDRAFT_QUANT_INTERLEAVED_UNTIL` overrides it.
let interleavedGemmCrossover: Int = {
    if let value = ProcessInfo.processInfo.environment["SWIFTDRAFT_QUANT_INTERLEAVED_UNTIL"], let n = Int(value), n > 0 {
        return n
    }
    return 64
}()

/// Weight bytes times activation rows under which a fused product runs on one thread
/// (`SWIFTDRAFT_QUANT_SINGLE_THREAD_BYTES` overrides it, for sweeps).
let quantizedSingleThreadBytes: Int = {
    if let value = ProcessInfo.processInfo.environment["SWIFTDRAFT_QUANT_SINGLE_THREAD_BYTES"], let n = Int(value), n >= 0 {
        return n
    }
    return 1 << 15
}()

/// Weight rows dequantized per fp32 panel of the large-m product: at most about 1 MiB of fp32 (a core's L2), a
/// multiple of 16 rows, and as many panels as a multiple of `threads` of equal size. Wide panels matter, since every
/// `sgemm` call packs all `m` activation rows again; equal ones too, since the threads split the panels: 576 rows in
/// panels of 448 left one of two threads a quarter of the work (SmolLM2's attention products), 192 rows left it none.
func quantizedPanelRows(rows: Int, columns: Int, threads: Int) -> Int {
    let widest = max(16, (262_144 / max(columns, 1)) & ~15)
    let panels = (rows + widest - 1) / widest
    let balanced = (panels + threads - 1) / threads * threads
    return min(widest, ((rows + balanced - 1) / balanced + 15) & ~15)
}

extension CPUDevice {
    /// `y (m x rows) = x (m x columns) * weight^T`, the weight staying in its block type: small `m` decodes each
    /// weight once per product into registers (for Q4_0/Q4_1/Q8_0 integer kernels on quantized activations, on the
    /// interleaved rows of `prepareForProducts` where the weight has them, or fused fp32 kernels when
    /// `quantizedActivations` is `.exact`; a row at a time through L1 for the other types). Large
    /// `m` runs the 16-bit integer GEMM for those types on quantized activations, and otherwise dequantizes bounded
    /// panels of rows for `sgemm`.
    public func quantizedLinear(x: DevicePointer<Float>, weight: QuantizedMatrix, y: DevicePointer<Float>,
                                m: Int) throws {
        try validate(weight, what: "quantized product")
        guard m >= 0 else { throw DeviceError(.invalidArgument, "quantized product: m = \(m), expected >= 0") }
        if m == 0 || weight.rows == 0 { return }
        let x = UnsafePointer(host(x)), y = host(y)
        if weight.columns == 0 {
            for i in 0..<m { (y + i * weight.rows).update(repeating: 0, count: weight.rows) }
            return
        }
        if m < interleavedGemmCrossover, let interleaved = weight.interleaved,
           interleaved.laneBytes == interleavedLaneBytes, let kernel = integerKernelType(weight.type) {
            interleavedProduct(x: x, weight: weight, interleaved: interleaved, kernel: kernel, y: y, m: m)
        } else if m >= quantizedPanelCrossover && weight.type != .f32 {
            if let kernel = integerKernelType(weight.type) {
                integerGemm(x: x, weight: weight, kernel: kernel, y: y, m: m)
            } else {
                panelProduct(x: x, weight: weight, y: y, m: m)
            }
        } else if weight.type == .f32 {
            sgemm(false, true, m, weight.rows, weight.columns, 1, x, weight.columns,
                  weight.data.assumingMemoryBound(to: Float.self), weight.columns, 0, y, weight.rows)
        } else {
            let kernel = integerKernelType(weight.type)
            var start = 0
            while start < m {
                let count = min(4, m - start)
                if let kernel {
                    integerProduct(x: x + start * weight.columns, weight: weight, kernel: kernel,
                                y: y + start * weight.rows, m: count)
                } else {
                    fusedProduct(x: x + start * weight.columns, weight: weight, y: y + start * weight.rows, m: count)
                }
                start += count
            }
        }
    }

    /// `out[i, :]` = row `tokens[i]` of `table`, dequantized; an id outside `0..<table.rows` is an error naming it.
    public func quantizedEmbedding(tokens: DevicePointer<Int32>, table: QuantizedMatrix, out: DevicePointer<Float>,
                                   count: Int) throws {
        try validate(table, what: "quantized embedding")
        guard count >= 0 else { throw DeviceError(.invalidArgument, "quantized embedding: count = \(count)") }
        let tokens = host(tokens), out = host(out)
        for i in 0..<count where tokens[i] < 0 || Int(tokens[i]) >= table.rows {
            throw DeviceError(.invalidArgument,
                              "quantized embedding: token \(tokens[i]) at position \(i) is outside 0..<\(table.rows)")
        }
        let rowBytes = table.rowBytes
        parallelChunks(count, threads: threads, grain: 16) { _, range in
            for i in range {
                dequantizeRow(table.type, table.data + Int(tokens[i]) * rowBytes, out + i * table.columns,
                              columns: table.columns)
            }
        }
    }

    private func validate(_ w: QuantizedMatrix, what: String) throws {
        guard w.rows >= 0, w.columns >= 0, w.columns % w.type.blockElements == 0 else {
            throw DeviceError(.invalidArgument, "\(what): \(w.type.name) matrix \(w.rows) x \(w.columns): columns must "
                              + "be a multiple of the block size \(w.type.blockElements)")
        }
    }

    /// Threads for a small-m product (fused or integer kernels): below about 32 KiB of weight bytes times activation
    /// rows a second thread costs more to start than it saves. With Dispatch's workers that bound was 512 KiB (waking
    /// one took tens of microseconds); with the spinning `WorkerTeam` every product of SmolLM2 and of the drafts pays
    /// on two threads: SmolLM2's layer products per decode step (`quant-bench --threads 2`, alternated) 7.1 ms at 0 or
    /// 32 KiB against 8.8 ms at 512 KiB.
    func smallProductThreads(_ weight: QuantizedMatrix, m: Int) -> Int {
        weight.rows * weight.rowBytes * m < quantizedSingleThreadBytes ? 1 : threads
    }

    /// Up to 4 activation rows against every weight row, the weight rows split over the threads.
    private func fusedProduct(x: UnsafePointer<Float>, weight: QuantizedMatrix, y: UnsafeMutablePointer<Float>, m: Int) {
        let rows = weight.rows, columns = weight.columns, rowBytes = weight.rowBytes
        let blocks = columns / 32
        let layout: NibbleLayout? = weight.type == .q4_0 ? .q4_0 : weight.type == .q4_1 ? .q4_1 : nil
        let fused = layout != nil || weight.type == .q8_0
        // Rows in groups of 4 for the fused kernels; the rest (and every row of other types) one at a time.
        let groups = fused ? rows / 4 : 0
        let perms = UnsafeMutablePointer<Float>.allocate(capacity: fused ? m * columns : 0)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: fused ? m * blocks : 0)
        defer { perms.deallocate(); sums.deallocate() }
        if fused {
            for i in 0..<m {
                if layout != nil {
                    prepareNibbleActivations(x + i * columns, blocks: blocks, into: perms + i * columns,
                                             sums: sums + i * blocks)
                } else {
                    prepareByteActivations(x + i * columns, blocks: blocks, into: perms + i * columns)
                }
            }
        }
        // Work in units of 4 rows so a chunk boundary never splits a group.
        let units = (rows + 3) / 4
        let data = weight.data
        let type = weight.type
        let threadCount = smallProductThreads(weight, m: m)
        parallelChunks(units, threads: threadCount, grain: 8) { _, range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: columns) { scratch in
                let permList: [UnsafePointer<Float>] = (0..<m).map { UnsafePointer(perms + $0 * columns) }
                let sumList: [UnsafePointer<Float>] = (0..<m).map { UnsafePointer(sums + $0 * blocks) }
                var results = [SIMD4<Float>](repeating: .zero, count: 4)
                let row = scratch.baseAddress.unsafelyUnwrapped
                for unit in range {
                    let r0 = unit * 4
                    if unit < groups {
                        let p = data + r0 * rowBytes
                        if let layout {
                            permList.withUnsafeBufferPointer { pl in
                                sumList.withUnsafeBufferPointer { sl in
                                    results.withUnsafeMutableBufferPointer { out in
                                        nibbleDot4Rows(p, rowBytes: rowBytes, blocks: blocks, layout: layout,
                                                       perms: pl.baseAddress.unsafelyUnwrapped,
                                                       sums: sl.baseAddress.unsafelyUnwrapped, xCount: m,
                                                       out: out.baseAddress.unsafelyUnwrapped)
                                    }
                                }
                            }
                        } else {
                            for i in 0..<m {
                                results[i] = byteDot4Rows(p, rowBytes: rowBytes, blocks: blocks, perm: permList[i])
                            }
                        }
                        for i in 0..<m {
                            let yi = y + i * rows + r0
                            yi[0] = results[i][0]; yi[1] = results[i][1]; yi[2] = results[i][2]; yi[3] = results[i][3]
                        }
                    } else {
                        for r in r0..<min(r0 + 4, rows) {
                            dequantizeRow(type, data + r * rowBytes, row, columns: columns)
                            for i in 0..<m { y[i * rows + r] = dotFloats(x + i * columns, row, columns) }
                        }
                    }
                }
            }
        }
    }

    /// Panels of `quantizedPanelRows(rows:columns:threads:)` weight rows dequantized into a per-thread fp32 tile, each
    /// multiplied by all `m` activation rows with a single-threaded `sgemm` (the threads split the panels).
    private func panelProduct(x: UnsafePointer<Float>, weight: QuantizedMatrix, y: UnsafeMutablePointer<Float>, m: Int) {
        let rows = weight.rows, columns = weight.columns, rowBytes = weight.rowBytes
        let panelRows = quantizedPanelRows(rows: rows, columns: columns, threads: threads)
        let panels = (rows + panelRows - 1) / panelRows
        let tiles = scratch.perThread(threads, bytes: panelRows * columns * MemoryLayout<Float>.stride)
        withSerialBLAS {
            parallelChunks(panels, threads: threads, grain: 1) { chunk, range in
                let t = tiles[chunk].assumingMemoryBound(to: Float.self)
                do {
                    for panel in range {
                        let r0 = panel * panelRows
                        let count = min(panelRows, rows - r0)
                        for r in 0..<count {
                            dequantizeRow(weight.type, weight.data + (r0 + r) * rowBytes, t + r * columns,
                                          columns: columns)
                        }
                        sgemm(false, true, m, count, columns, 1, x, columns, t, columns, 0, y + r0, rows)
                    }
                }
            }
        }
    }
}
