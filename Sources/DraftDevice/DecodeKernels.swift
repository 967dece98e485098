import DraftFormats

/// A weight matrix in one of ggml's block types, in host memory that its owner keeps alive (usually a GGUF file's
/// memory map): `rows` output features, each a row of `columns` input features packed into `rowBytes` bytes.
///
/// Quantized products dequantize block by block; the matrix is never expanded to fp32.
public struct QuantizedMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    public let data: UnsafeRawPointer
    /// The same rows in a backend's own layout for its products, from `DecodeKernels.prepareForProducts`; nil until
    /// then, or where the backend has none.
    public var interleaved: InterleavedRows?

    public init(type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer, interleaved: InterleavedRows? = nil) {
        self.type = type
        self.rows = rows
        self.columns = columns
        self.data = data
        self.interleaved = interleaved
    }

    public var rowBytes: Int { (columns / type.blockElements) * type.blockBytes }

    /// Rows `range` of this matrix, without copying (a fused `qkv` or `gate_up` weight splits this way). The
    /// interleaved copy stays with the slice where `range` falls on its groups' boundaries.
    public func rows(_ range: Range<Int>) -> QuantizedMatrix {
        var slice = interleaved.flatMap { $0.rows(range, rowBytes: rowBytes) }
        if slice?.groups == 0 { slice = nil }
        return QuantizedMatrix(type: type, rows: range.count, columns: columns, data: data + range.lowerBound * rowBytes,
                               interleaved: slice)
    }
}

/// A matrix's rows regrouped `groupRows` at a time into the layout of the CPU's few-row integer products
/// (`sd_interleave`: within a group, block by block, the rows' scales and then their quants side by side,
/// `laneBytes` of each row at a time: 2 for 16-bit activations, 4 for 8-bit ones). It
/// covers the first `groups * groupRows` rows, byte for byte the same size; the products take any remaining rows from
/// the plain layout.
///
/// Like the matrix's own data, the memory belongs to whoever prepared it (`prepareForProducts` hands back its owner).
/// A matrix is copied at every product, so it holds no reference: one here cost a retain and a release per copy,
/// measured as 0.2 ms of every 0.7 ms draft step.
public struct InterleavedRows: @unchecked Sendable {
    public static let groupRows = 16
    public let data: UnsafeRawPointer
    public let groups: Int
    public let laneBytes: Int

    public init(data: UnsafeRawPointer, groups: Int, laneBytes: Int) {
        self.data = data
        self.groups = groups
        self.laneBytes = laneBytes
    }

    /// The whole groups within rows `range` (of a matrix whose rows are `rowBytes` long), when `range` starts on a
    /// group: its other rows are then plain rows after the interleaved ones, as the products expect.
    func rows(_ range: Range<Int>, rowBytes: Int) -> InterleavedRows? {
        let g = Self.groupRows
        guard range.lowerBound % g == 0, range.lowerBound / g <= groups else { return nil }
        let first = range.lowerBound / g
        return InterleavedRows(data: data + first * g * rowBytes, groups: min(range.count / g, groups - first),
                               laneBytes: laneBytes)
    }
}

/// The kernels of inference beyond the training kernels: rotary positions per row, a KV cache, attention of new rows
/// over it, biases, and products with quantized weights.
///
/// Layout conventions are `Device`'s (row-major, `(rows, heads, headDim)` activations). A KV cache is one buffer per
/// layer and per K or V of `(slotCount, capacity, kvHeads, headDim)`: slot `s` holds one sequence, position `p` its
/// `p`-th token. Every backend implements the fp32 kernels (a draft decodes on any device); the quantized products may
/// be CPU-only, and the defaults below throw `DeviceError(.unsupported)`.
public protocol DecodeKernels: AnyObject {
    /// Rotary embedding in place on `x` laid out `(rows, heads, headDim)` in Hugging Face's half-split layout, row `r`
    /// at position `positions[r]` (`0 <= position < maxPositions`, the rows of the `(maxPositions, headDim/2)` tables).
    func rotaryEmbedding(x: DevicePointer<Float>, positions: DevicePointer<Int32>, cos: DevicePointer<Float>,
                         sin: DevicePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int) throws

    /// Copies `count` rows of `width` floats into a cache `(slotCount, capacity, width)`: row `r` goes to slot
    /// `slots[r]`, position `positions[r]`. Out-of-range slots or positions are an error.
    func kvCacheWrite(rows: DevicePointer<Float>, cache: DevicePointer<Float>, slots: DevicePointer<Int32>,
                      positions: DevicePointer<Int32>, count: Int, width: Int, capacity: Int, slotCount: Int) throws

    /// Causal attention of `rows` query rows over a KV cache with grouped KV heads (query head `h` reads KV head
    /// `h / (heads / kvHeads)`), scale `1/sqrt(headDim)`: query row `r` attends to positions `0...positions[r]` of
    /// slot `slots[r]` (its own key must already be written). `q`, `out`: `(rows, heads, headDim)`.
    func attentionOverCache(q: DevicePointer<Float>, kCache: DevicePointer<Float>, vCache: DevicePointer<Float>,
                            out: DevicePointer<Float>, slots: DevicePointer<Int32>, positions: DevicePointer<Int32>,
                            rows: Int, heads: Int, kvHeads: Int, headDim: Int, capacity: Int, slotCount: Int) throws

    /// `x[r, :] += bias[:]` over `rows` rows of `width` (Qwen2's q/k/v biases).
    func addBias(x: DevicePointer<Float>, bias: DevicePointer<Float>, rows: Int, width: Int) throws

    /// `y (m x weight.rows) = x (m x weight.columns) * weight^T` with a quantized (or F16/BF16) weight.
    func quantizedLinear(x: DevicePointer<Float>, weight: QuantizedMatrix, y: DevicePointer<Float>, m: Int) throws

    /// `out[i, :] = dequantize(table row tokens[i])` for `count` tokens; ids outside the table are an error.
    func quantizedEmbedding(tokens: DevicePointer<Int32>, table: QuantizedMatrix, out: DevicePointer<Float>,
                            count: Int) throws

    /// `weight` with whatever this backend's products want beside it (the CPU's interleaved rows), made once at load
    /// so that no product rearranges weights per call, and the object that keeps that new memory alive (nil when
    /// nothing was made): the caller holds it for as long as it uses the matrix. The default returns `weight`
    /// unchanged.
    func prepareForProducts(_ weight: QuantizedMatrix) throws -> (matrix: QuantizedMatrix, owner: AnyObject?)
}

extension DecodeKernels {
    public func rotaryEmbedding(x: DevicePointer<Float>, positions: DevicePointer<Int32>, cos: DevicePointer<Float>,
                                sin: DevicePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int) throws {
        throw DeviceError(.unsupported, "this device has no rotary-at-positions kernel (inference)")
    }
    public func kvCacheWrite(rows: DevicePointer<Float>, cache: DevicePointer<Float>, slots: DevicePointer<Int32>,
                             positions: DevicePointer<Int32>, count: Int, width: Int, capacity: Int, slotCount: Int) throws {
        throw DeviceError(.unsupported, "this device has no KV-cache kernel (inference)")
    }
    public func attentionOverCache(q: DevicePointer<Float>, kCache: DevicePointer<Float>, vCache: DevicePointer<Float>,
                                   out: DevicePointer<Float>, slots: DevicePointer<Int32>, positions: DevicePointer<Int32>,
                                   rows: Int, heads: Int, kvHeads: Int, headDim: Int, capacity: Int, slotCount: Int) throws {
        throw DeviceError(.unsupported, "this device has no attention-over-cache kernel (inference)")
    }
    public func addBias(x: DevicePointer<Float>, bias: DevicePointer<Float>, rows: Int, width: Int) throws {
        throw DeviceError(.unsupported, "this device has no bias kernel (inference)")
    }
    public func quantizedLinear(x: DevicePointer<Float>, weight: QuantizedMatrix, y: DevicePointer<Float>, m: Int) throws {
        throw DeviceError(.unsupported, "quantized \(weight.type.name) weights run on the CPU backend only")
    }
    public func quantizedEmbedding(tokens: DevicePointer<Int32>, table: QuantizedMatrix, out: DevicePointer<Float>,
                                   count: Int) throws {
        throw DeviceError(.unsupported, "quantized \(table.type.name) embeddings run on the CPU backend only")
    }
    public func prepareForProducts(_ weight: QuantizedMatrix) throws -> (matrix: QuantizedMatrix, owner: AnyObject?) {
        (weight, nil)
    }
}
