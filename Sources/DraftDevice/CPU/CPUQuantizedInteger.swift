import CQuantDot
import DraftFormats
import Foundation

/// How the CPU backend's products with Q4_0, Q4_1 and Q8_0 weights treat their activations. In both integer modes,
/// products of `quantizedPanelCrossover` rows or more (prompts, batches) run a 16-bit integer GEMM; the mode decides
/// the small-m ones (decode, speculative verification). The integer modes need AVX-512 VNNI; elsewhere the products
/// stay exact.
public enum QuantizedActivations: String, Sendable, CaseIterable {
    /// fp32 activations against exactly dequantized weights: the reference, what `transformers` computes from a GGUF.
    case exact
    /// Activations quantized to 16 bits per block of 32, integer dot products (`vpdpwssd`): an error per element of
    /// 1/65534 of the block's largest, so greedy output matches the exact product's (the SmolLM2 tests run on it).
    case int16
    /// Activations quantized to 8 bits per block of 32 (`vpdpbusd`), as llama.cpp runs a decode step: the fewest
    /// instructions per weight, and logits within about 0.25 of the exact ones on SmolLM2 (enough to flip a close
    /// greedy choice).
    case int8

    /// `SWIFTDRAFT_QUANT_ACTIVATIONS` (`exact`, `int16` or `int8`), else `.int16` where the CPU runs it; a set but
    /// unrecognised value is an error (the commands build their CPU device with this, so it is refused, not ignored).
    public static func fromEnvironment() throws -> QuantizedActivations {
        guard let value = ProcessInfo.processInfo.environment["SWIFTDRAFT_QUANT_ACTIVATIONS"] else {
            return integerKernelsAvailable ? .int16 : .exact
        }
        guard let mode = QuantizedActivations(rawValue: value) else {
            throw DeviceError(.invalidArgument, "SWIFTDRAFT_QUANT_ACTIVATIONS=\(value): expected "
                              + allCases.map(\.rawValue).joined(separator: ", "))
        }
        return mode
    }

    /// `fromEnvironment()`, with the default in place of an unrecognised value (`CPUDevice()`'s default, which
    /// cannot throw).
    public static var configured: QuantizedActivations {
        (try? fromEnvironment()) ?? (integerKernelsAvailable ? .int16 : .exact)
    }
}

/// Whether this CPU has the integer kernels' instructions (AVX-512 F/BW/VL/VNNI), checked once.
public let integerKernelsAvailable: Bool = sd_integer_dots_available()

/// Activation rows quantized for the integer kernels: per row `blocks * 32` quants of 8 or 16 bits, and per block
/// its scale and the sum of its quants, laid out in the arena's shared buffer.
private struct IntegerActivations {
    let quants: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Int32>

    private static func quantBytes(rows: Int, columns: Int, bits: Int) -> Int {
        (rows * columns * bits / 8 + 63) & ~63
    }

    /// Quantizes the rows into `arena`'s shared buffer on `threads` threads (each row's quants depend on that row
    /// alone).
    init(_ x: UnsafePointer<Float>, rows: Int, columns: Int, bits: Int, threads: Int = 1, arena: ScratchArena) {
        let blocks = columns / 32
        let memory = arena.shared(bytes: Self.quantBytes(rows: rows, columns: columns, bits: bits) + 2 * rows * blocks * 4)
        quants = memory
        scales = (memory + Self.quantBytes(rows: rows, columns: columns, bits: bits))
            .bindMemory(to: Float.self, capacity: rows * blocks)
        sums = UnsafeMutableRawPointer(scales + rows * blocks).bindMemory(to: Int32.self, capacity: rows * blocks)
        let quants = quants, scales = scales, sums = sums
        parallelChunks(rows, threads: threads, grain: 8) { _, range in
            for i in range {
                if bits == 8 {
                    sd_int8_quantize_row(x + i * columns, Int64(blocks),
                                         quants.assumingMemoryBound(to: Int8.self) + i * columns,
                                         scales + i * blocks, sums + i * blocks)
                } else {
                    sd_int16_quantize_row(x + i * columns, Int64(blocks),
                                          quants.assumingMemoryBound(to: Int16.self) + i * columns,
                                          scales + i * blocks, sums + i * blocks)
                }
            }
        }
    }
}

extension CPUDevice {
    /// The integer kernels' name for `type`, when this device runs integer activations and has a kernel for it.
    func integerKernelType(_ type: GGMLType) -> sd_weight_type? {
        guard quantizedActivations != .exact else { return nil }
        switch type {
        case .q4_0: return SD_WEIGHT_Q4_0
        case .q4_1: return SD_WEIGHT_Q4_1
        case .q8_0: return SD_WEIGHT_Q8_0
        default: return nil
        }
    }

    /// Many activation rows (`m` from `quantizedPanelCrossover`), quantized to 16 bits whatever the mode (8-bit
    /// quants buy little where arithmetic, not the weights' bandwidth, is the limit, and cost accuracy), against
    /// tiles of 32 weight rows; the threads split the tiles, each with its own scratch.
    func integerGemm(x: UnsafePointer<Float>, weight: QuantizedMatrix, kernel: sd_weight_type,
                     y: UnsafeMutablePointer<Float>, m: Int) {
        let rows = weight.rows, blocks = weight.columns / 32
        let activations = IntegerActivations(x, rows: m, columns: weight.columns, bits: 16, threads: threads,
                                             arena: scratch)
        let tiles = (rows + 31) / 32
        let tileMemory = scratch.perThread(threads, bytes: Int(sd_int16_gemm_scratch_bytes(Int64(blocks))))
        parallelChunks(tiles, threads: threads, grain: 1) { chunk, range in
            sd_int16_gemm(kernel, weight.data, Int64(weight.rowBytes), Int64(blocks), Int64(range.lowerBound * 32),
                          Int64(min(range.upperBound * 32, rows)),
                          activations.quants.assumingMemoryBound(to: Int16.self), activations.scales,
                          activations.sums, Int64(m), y, Int64(rows), tileMemory[chunk])
        }
    }

    /// `weight` with its rows interleaved for the few-row integer products (`sd_interleave`), where this device runs
    /// them: integer activations on a Q4_0, Q4_1 or Q8_0 matrix of 16 rows or more, in the lanes of this device's mode
    /// (2 bytes for int16, 4 for int8). The copy is as large as the matrix (SmolLM2's 92 MiB in host memory beside its
    /// mapped file) and takes one pass over it, split over the threads. Anything else, or a matrix already prepared,
    /// comes back as it is.
    public func prepareForProducts(_ weight: QuantizedMatrix) throws -> (matrix: QuantizedMatrix, owner: AnyObject?) {
        let groups = weight.rows / InterleavedRows.groupRows
        guard weight.interleaved == nil, let laneBytes = interleavedLaneBytes, groups > 0, weight.columns % 32 == 0,
              let kernel = integerKernelType(weight.type) else { return (weight, nil) }
        let groupBytes = InterleavedRows.groupRows * weight.rowBytes
        let buffer = InterleavedBuffer(bytes: groups * groupBytes)
        parallelChunks(groups, threads: threads, grain: 64) { _, range in
            sd_interleave(kernel, weight.data + range.lowerBound * groupBytes, Int64(weight.rowBytes),
                          Int64(weight.columns / 32), Int64(range.count), Int32(laneBytes),
                          buffer.pointer + range.lowerBound * groupBytes)
        }
        var prepared = weight
        prepared.interleaved = InterleavedRows(data: buffer.pointer, groups: groups, laneBytes: laneBytes)
        return (prepared, buffer)
    }

    /// The interleaved layout's lane width for this device's integer products (nil in exact mode).
    var interleavedLaneBytes: Int? {
        switch quantizedActivations {
        case .exact: return nil
        case .int16: return 2
        case .int8: return 4
        }
    }

    /// Any number of activation rows (below `interleavedGemmCrossover`), quantized once to this device's width,
    /// against the interleaved groups of 16 weight rows, split over the threads; rows after the last group take the
    /// row kernels.
    func interleavedProduct(x: UnsafePointer<Float>, weight: QuantizedMatrix, interleaved: InterleavedRows,
                            kernel: sd_weight_type, y: UnsafeMutablePointer<Float>, m: Int) {
        let rows = weight.rows, blocks = Int64(weight.columns / 32)
        let bits = interleaved.laneBytes == 4 ? 8 : 16  // the layout's lanes: 4 bytes for vpdpbusd quads, 2 for pairs
        let activations = IntegerActivations(x, rows: m, columns: weight.columns, bits: bits, arena: scratch)
        let quants8 = activations.quants.assumingMemoryBound(to: Int8.self)
        let quants16 = activations.quants.assumingMemoryBound(to: Int16.self)
        parallelChunks(interleaved.groups, threads: smallProductThreads(weight, m: m), grain: 2) { _, range in
            if bits == 8 {
                sd_int8_interleaved_product(kernel, interleaved.data, blocks, Int64(range.lowerBound),
                                            Int64(range.upperBound), quants8, activations.scales, activations.sums,
                                            Int64(m), y, Int64(rows))
            } else {
                sd_int16_interleaved_product(kernel, interleaved.data, blocks, Int64(range.lowerBound),
                                             Int64(range.upperBound), quants16, activations.scales, activations.sums,
                                             Int64(m), y, Int64(rows))
            }
        }
        let covered = interleaved.groups * InterleavedRows.groupRows
        guard covered < rows else { return }
        for first in stride(from: 0, to: m, by: 4) {
            let offset = first * weight.columns, blockOffset = first * Int(blocks), count = Int32(min(4, m - first))
            if bits == 8 {
                sd_int8_product(kernel, weight.data, Int64(weight.rowBytes), blocks, Int64(covered), Int64(rows),
                                quants8 + offset, activations.scales + blockOffset, activations.sums + blockOffset,
                                count, y + first * rows, Int64(rows))
            } else {
                sd_int16_product(kernel, weight.data, Int64(weight.rowBytes), blocks, Int64(covered), Int64(rows),
                                 quants16 + offset, activations.scales + blockOffset, activations.sums + blockOffset,
                                 count, y + first * rows, Int64(rows))
            }
        }
    }

    /// Up to 4 activation rows, quantized once, against every weight row; the threads split the rows in groups of 4
    /// (each result depends on its row alone, so the split never changes a bit).
    func integerProduct(x: UnsafePointer<Float>, weight: QuantizedMatrix, kernel: sd_weight_type,
                        y: UnsafeMutablePointer<Float>, m: Int) {
        let rows = weight.rows, rowBytes = weight.rowBytes, blocks = weight.columns / 32
        let bits = quantizedActivations == .int8 ? 8 : 16
        let activations = IntegerActivations(x, rows: m, columns: weight.columns, bits: bits, arena: scratch)
        let units = (rows + 3) / 4
        parallelChunks(units, threads: smallProductThreads(weight, m: m), grain: 8) { _, range in
            let begin = Int64(range.lowerBound * 4), end = Int64(min(range.upperBound * 4, rows))
            if bits == 8 {
                sd_int8_product(kernel, weight.data, Int64(rowBytes), Int64(blocks), begin, end,
                                activations.quants.assumingMemoryBound(to: Int8.self), activations.scales,
                                activations.sums, Int32(m), y, Int64(rows))
            } else {
                sd_int16_product(kernel, weight.data, Int64(rowBytes), Int64(blocks), begin, end,
                                 activations.quants.assumingMemoryBound(to: Int16.self), activations.scales,
                                 activations.sums, Int32(m), y, Int64(rows))
            }
        }
    }
}

/// The memory of one matrix's interleaved rows (`prepareForProducts`' owner), freed with it.
final class InterleavedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer

    init(bytes: Int) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    }

    deinit { pointer.deallocate() }
}
