import DraftDevice
import Foundation
import DraftFormats
import DraftModel

/// The shape and numerics of a decoder-only transformer as inference needs them, whatever file it came from
/// (GGUF metadata, a Hugging Face `config.json`, a SwiftDraft checkpoint's model config).
public struct DecoderConfig: Sendable, Equatable {
    /// `llama`, `phi3` or `qwen2`: the architecture the weights were read as (the layer logic is shared).
    public var architecture: String
    public var vocabSize: Int
    public var dim: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffnDim: Int
    /// The longest context the model was trained for; prompts plus new tokens beyond it are refused.
    public var contextLength: Int
    public var normEps: Float
    /// Rotary inverse frequencies, `headDim / 2` of them, with any scaling (Llama-3's `llama3` type) already applied.
    public var ropeInverseFrequencies: [Float]
    public var bosTokenID: Int32?
    public var eosTokenIDs: [Int32]
    /// Whether the model's tokenizer puts BOS before a text (GGUF `tokenizer.ggml.add_bos_token`, Hugging Face
    /// `add_bos_token`): raw prompts and `score`'s chunks start with it when true. Set after `init`.
    public var addsBOS: Bool = false

    public init(architecture: String, vocabSize: Int, dim: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                ffnDim: Int, contextLength: Int, normEps: Float, ropeInverseFrequencies: [Float],
                bosTokenID: Int32?, eosTokenIDs: [Int32]) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.dim = dim
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.ffnDim = ffnDim
        self.contextLength = contextLength
        self.normEps = normEps
        self.ropeInverseFrequencies = ropeInverseFrequencies
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    /// Plain rotary inverse frequencies `1 / theta^(2i/headDim)`, computed in float32 as Hugging Face does (the
    /// training model's own, `RotaryTables`).
    public static func ropeInverseFrequencies(theta: Double, headDim: Int) -> [Float] {
        RotaryTables.inverseFrequencies(theta: theta, headDim: headDim)
    }
}

/// A weight matrix `(rows = out features, columns = in features)` as a layer multiplies by it: fp32 in device memory
/// (a draft, a Hugging Face model) or a quantized block type in host memory (a GGUF target, CPU only).
public enum LinearWeight: @unchecked Sendable {
    case dense(DevicePointer<Float>, rows: Int, columns: Int)
    case quantized(QuantizedMatrix)

    public var rows: Int {
        switch self {
        case .dense(_, let rows, _): return rows
        case .quantized(let m): return m.rows
        }
    }
    public var columns: Int {
        switch self {
        case .dense(_, _, let columns): return columns
        case .quantized(let m): return m.columns
        }
    }
}

/// One decoder layer's weights. Rotary q/k rows are in Hugging Face's half-split order (a GGUF `llama` file's
/// interleaved rows are un-permuted at load). Biases are Qwen2's; nil elsewhere.
public struct DecoderLayerWeights: @unchecked Sendable {
    public var inputNorm: DevicePointer<Float>
    public var q, k, v, o: LinearWeight
    public var qBias, kBias, vBias: DevicePointer<Float>?
    public var postNorm: DevicePointer<Float>
    public var gate, up, down: LinearWeight

    public init(inputNorm: DevicePointer<Float>, q: LinearWeight, k: LinearWeight, v: LinearWeight, o: LinearWeight,
                qBias: DevicePointer<Float>? = nil, kBias: DevicePointer<Float>? = nil, vBias: DevicePointer<Float>? = nil,
                postNorm: DevicePointer<Float>, gate: LinearWeight, up: LinearWeight, down: LinearWeight) {
        self.inputNorm = inputNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.qBias = qBias
        self.kBias = kBias
        self.vBias = vBias
        self.postNorm = postNorm
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// All of a decoder's weights on one device. `owner` keeps whatever backs them alive (a GGUF memory map, device
/// allocations, a `LlamaModel`), for as long as the weights are used.
public struct DecoderWeights: @unchecked Sendable {
    /// `(vocab, dim)`: fp32 rows on the device, or quantized rows (gathered and dequantized per token).
    public var embedding: LinearWeight
    public var layers: [DecoderLayerWeights]
    public var finalNorm: DevicePointer<Float>
    /// `(vocab, dim)`; the embedding itself when tied.
    public var head: LinearWeight
    /// A subset head's ids (a draft trained with `model.head_vocab`, ascending): only these rows of `head` are
    /// scored, and every other id gets logit `-inf`, so the model's distribution q is 0 outside the subset and
    /// speculative sampling against a full-vocabulary target stays exact. nil scores every row.
    public var headIDs: [Int32]?
    public var owner: AnyObject?

    public init(embedding: LinearWeight, layers: [DecoderLayerWeights], finalNorm: DevicePointer<Float>,
                head: LinearWeight, headIDs: [Int32]? = nil, owner: AnyObject?) {
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.head = head
        self.headIDs = headIDs
        self.owner = owner
    }
}

extension DecoderWeights {
    /// These weights with every quantized matrix that a product multiplies by prepared for `device`'s products
    /// (`prepareForProducts`: the CPU's interleaved rows); a matrix used twice is prepared once and shared. Not
    /// prepared: the embedding (only its rows are read; a tied one still shares the head's data), a head that a subset
    /// of ids replaces (the engine prepares the gathered rows instead), and fp32 weights. The result's owner keeps both
    /// the new memory and these weights' owner alive.
    public func prepared(for device: any Device) throws -> DecoderWeights {
        let storage = PreparedWeightStorage(keeping: owner)
        var done: [UnsafeRawPointer: QuantizedMatrix] = [:]
        func prepare(_ weight: LinearWeight) throws -> LinearWeight {
            guard case .quantized(let matrix) = weight else { return weight }
            if let shared = done[matrix.data], shared.rows == matrix.rows { return .quantized(shared) }
            let (prepared, owner) = try device.prepareForProducts(matrix)
            if let owner { storage.owners.append(owner) }
            done[matrix.data] = prepared
            return .quantized(prepared)
        }
        var w = self
        for (l, layer) in layers.enumerated() {
            var p = layer
            p.q = try prepare(layer.q)
            p.k = try prepare(layer.k)
            p.v = try prepare(layer.v)
            p.o = try prepare(layer.o)
            p.gate = try prepare(layer.gate)
            p.up = try prepare(layer.up)
            p.down = try prepare(layer.down)
            w.layers[l] = p
        }
        if headIDs == nil { w.head = try prepare(head) }
        if !storage.owners.isEmpty { w.owner = storage }
        return w
    }
}

/// What prepared weights own: the backend's memory for each matrix, and the original weights' owner (the prepared
/// matrices still point into its data, and the norms and biases are its).
final class PreparedWeightStorage: @unchecked Sendable {
    private let original: AnyObject?
    var owners: [AnyObject] = []

    init(keeping original: AnyObject?) {
        self.original = original
    }
}
