import DraftDevice
import DraftErrors
import DraftFormats
import Foundation

extension LoadedModel {
    /// This model with its fp32 matrices quantized to `type` at load (`DecoderWeights.quantized`), its weight bytes
    /// counted as they now run.
    public func quantized(to type: GGMLType, device: any Device) throws -> LoadedModel {
        guard type != .f32 else { return self }
        var model = self
        let (weights, fp32Bytes, quantizedBytes) = try self.weights.quantized(to: type, device: device, source: source)
        model.weights = weights
        model.weightBytes = weightBytes - fp32Bytes + quantizedBytes
        model.source = "\(source), quantized to \(type.name) at load"
        return model
    }
}

extension DecoderWeights {
    /// These weights with the fp32 matrices (embedding, every projection, the head) quantized to `type` in host
    /// memory, so a draft trained by SwiftDraft decodes through the quantized kernels without an export: Q8_0 rows
    /// are the ones `export --format gguf --dtype q8_0` writes (ggml's round-to-nearest per 32-value block), and a
    /// tied head stays one matrix. Norms and biases stay fp32. A subset head (`model.head_vocab`) is kept: the engine
    /// gathers its rows from the quantized head as it does from an fp32 one, which the GGUF export (a
    /// full-vocabulary head) cannot carry.
    ///
    /// The matrices are copied out through `device`; already-quantized ones (a GGUF) are refused rather than
    /// re-encoded, and `type` must be one `Quantizer` writes. Returns the weights and the bytes of the matrices
    /// before and after (`source` names the model in errors).
    public func quantized(to type: GGMLType, device: any Device,
                          source: String) throws -> (weights: DecoderWeights, fp32Bytes: Int, quantizedBytes: Int) {
        guard Quantizer.supported.contains(type) else {
            throw InputError("--draft-dtype \(type.name): expected one of \(Quantizer.supported.map { $0.name.lowercased() }.joined(separator: ", "))")
        }
        let storage = QuantizedWeightStorage(keeping: owner)
        var converted: [DevicePointer<Float>: QuantizedMatrix] = [:]
        var fp32Bytes = 0, quantizedBytes = 0
        func quantize(_ weight: LinearWeight, _ name: String) throws -> LinearWeight {
            guard case .dense(let pointer, let rows, let columns) = weight else {
                throw InputError("\(source): \(name) is already quantized; --draft-dtype converts fp32 drafts only")
            }
            if let done = converted[pointer] { return .quantized(done) }
            guard columns % type.blockElements == 0 else {
                throw InputError("\(source): \(name) has \(columns) columns, not a whole number of \(type.name) blocks of \(type.blockElements)")
            }
            var values = [Float](repeating: 0, count: rows * columns)
            try values.withUnsafeMutableBufferPointer { try device.copyToHost(pointer, $0) }
            let matrix = try storage.quantize(type, values, rows: rows, columns: columns)
            converted[pointer] = matrix
            fp32Bytes += 4 * rows * columns
            quantizedBytes += matrix.rows * matrix.rowBytes
            return .quantized(matrix)
        }
        var w = self
        w.embedding = try quantize(embedding, "the embedding")
        for (l, layer) in layers.enumerated() {
            var q = layer
            q.q = try quantize(layer.q, "layer \(l) q")
            q.k = try quantize(layer.k, "layer \(l) k")
            q.v = try quantize(layer.v, "layer \(l) v")
            q.o = try quantize(layer.o, "layer \(l) o")
            q.gate = try quantize(layer.gate, "layer \(l) gate")
            q.up = try quantize(layer.up, "layer \(l) up")
            q.down = try quantize(layer.down, "layer \(l) down")
            w.layers[l] = q
        }
        w.head = try quantize(head, "the head")
        w.owner = storage
        return (w, fp32Bytes, quantizedBytes)
    }
}

/// Host memory of matrices quantized at load, freed with the weights; it also keeps the original weights' owner
/// alive, since the norms and biases still point into it.
final class QuantizedWeightStorage: @unchecked Sendable {
    private let original: AnyObject?
    private var buffers: [UnsafeMutableRawPointer] = []

    init(keeping original: AnyObject?) {
        self.original = original
    }

    func quantize(_ type: GGMLType, _ values: [Float], rows: Int, columns: Int) throws -> QuantizedMatrix {
        guard let bytes = type.byteCount(elements: values.count) else {
            throw InputError("cannot quantize a \(rows) x \(columns) matrix to \(type.name)")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        buffers.append(buffer)
        try values.withUnsafeBufferPointer {
            try Quantizer.quantize(type, $0.baseAddress!, into: buffer, count: values.count)
        }
        return QuantizedMatrix(type: type, rows: rows, columns: columns, data: UnsafeRawPointer(buffer))
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }
}

extension LoadedModel {
    /// This model with its head scoring only `ids` (FR-Spec's frequency-ranked subset, applied to a draft trained
    /// with the full head): every other id gets logit `-inf`, so q is 0 there and speculative sampling stays exact,
    /// while the head's product shrinks to `ids.count` rows. `ids` must be ascending, distinct, inside the
    /// vocabulary and fewer than it; a draft that already has a subset head is refused.
    public func withSubsetHead(_ ids: [Int32]) throws -> LoadedModel {
        guard weights.headIDs == nil else {
            throw InputError("\(source): the draft already has a subset head of \(weights.headIDs!.count) ids")
        }
        guard !ids.isEmpty, ids.count < config.vocabSize, zip(ids, ids.dropFirst()).allSatisfy({ $0 < $1 }),
              let first = ids.first, first >= 0, let last = ids.last, Int(last) < config.vocabSize else {
            throw InputError("\(source): a subset head needs 1 to \(config.vocabSize - 1) ascending distinct ids below \(config.vocabSize), got \(ids.count)")
        }
        var model = self
        model.weights.headIDs = ids
        model.source = "\(source), head over \(ids.count) ids"
        return model
    }
}
