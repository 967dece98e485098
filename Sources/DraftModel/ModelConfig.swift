/// The shape of a Llama-style decoder, as the `model:` section of a config spells it.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var arch: String
    public var vocabSize: Int
    public var dim: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var ffnDim: Int
    public var maxSeqLen: Int
    public var ropeTheta: Double
    public var normEps: Double
    public var tieEmbeddings: Bool
    /// `head_vocab`: the LM head scores only this many token ids (the most frequent on `headVocabSource`), or the
    /// whole vocabulary when nil. Which ids they are is the model's `headIDs`, stored in its checkpoint.
    public var headVocab: Int?
    /// `head_vocab_source`: the `data.sources` entry whose training shards rank the ids for `headVocab`.
    public var headVocabSource: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case arch, dim, layers, heads
        case vocabSize = "vocab_size", kvHeads = "kv_heads", ffnDim = "ffn_dim", maxSeqLen = "max_seq_len"
        case ropeTheta = "rope_theta", normEps = "norm_eps", tieEmbeddings = "tie_embeddings"
        case headVocab = "head_vocab", headVocabSource = "head_vocab_source"
    }

    public init(arch: String = "llama", vocabSize: Int, dim: Int, layers: Int, heads: Int, kvHeads: Int,
                ffnDim: Int, maxSeqLen: Int, ropeTheta: Double = 10_000, normEps: Double = 1e-5,
                tieEmbeddings: Bool = true, headVocab: Int? = nil, headVocabSource: String? = nil) {
        self.arch = arch
        self.vocabSize = vocabSize
        self.dim = dim
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.ffnDim = ffnDim
        self.maxSeqLen = maxSeqLen
        self.ropeTheta = ropeTheta
        self.normEps = normEps
        self.tieEmbeddings = tieEmbeddings
        self.headVocab = headVocab
        self.headVocabSource = headVocabSource
    }

    /// `arch`, `rope_theta`, `norm_eps` and `tie_embeddings` have Llama's usual defaults; the sizes are required.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        arch = try c.decodeIfPresent(String.self, forKey: .arch) ?? "llama"
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        dim = try c.decode(Int.self, forKey: .dim)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
        ffnDim = try c.decode(Int.self, forKey: .ffnDim)
        maxSeqLen = try c.decode(Int.self, forKey: .maxSeqLen)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10_000
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? 1e-5
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings) ?? true
        headVocab = try c.decodeIfPresent(Int.self, forKey: .headVocab)
        headVocabSource = try c.decodeIfPresent(String.self, forKey: .headVocabSource)
    }

    /// The YAML key names, for rejecting unknown keys.
    public static let keyNames: Set<String> = Set(CodingKeys.allCases.map(\.rawValue))

    public var headDim: Int { dim / heads }
    public var kvDim: Int { kvHeads * headDim }
    /// Rows of the LM head that are scored: `head_vocab`, or the whole vocabulary.
    public var headSize: Int { headVocab ?? vocabSize }

    /// The first impossible value as `(key, what was expected)`, or nil when the shape is buildable.
    public func firstProblem() -> (key: String, expected: String)? {
        if arch != "llama" { return ("arch", "'llama' (the only architecture), got '\(arch)'") }
        for (key, value) in [("vocab_size", vocabSize), ("dim", dim), ("layers", layers), ("heads", heads),
                             ("kv_heads", kvHeads), ("ffn_dim", ffnDim), ("max_seq_len", maxSeqLen)] where value <= 0 {
            return (key, "a positive integer, got \(value)")
        }
        if dim % heads != 0 { return ("heads", "a divisor of dim \(dim), got \(heads)") }
        if headDim % 2 != 0 { return ("heads", "dim/heads even for rotary embeddings, got head dim \(headDim)") }
        if heads % kvHeads != 0 { return ("kv_heads", "a divisor of heads \(heads), got \(kvHeads)") }
        if !(ropeTheta > 0) { return ("rope_theta", "a positive number, got \(ropeTheta)") }
        if !(normEps > 0) { return ("norm_eps", "a positive number, got \(normEps)") }
        if let k = headVocab, !(1...vocabSize).contains(k) {
            return ("head_vocab", "an integer in 1...vocab_size \(vocabSize), got \(k)")
        }
        return nil
    }

    /// Parameters in the flat buffer.
    public var parameterCount: Int { ParameterLayout(self).count }

    /// Training FLOPs per token at sequence length `seqLen`, in the PaLM / llm.c accounting that the benchmarks and
    /// the planner share: 6 per parameter (forward 2, backward 4) plus attention's score and value products,
    /// 12 * layers * seqLen * dim (counted over the full square, as PaLM does). A subset head multiplies by
    /// `headRows` rows instead of `vocabSize`, so the rows it skips are not counted.
    public func trainingFLOPsPerToken(seqLen: Int) -> Double {
        6 * Double(parameterCount - (vocabSize - headSize) * dim) + 12 * Double(layers * seqLen * dim)
    }
}
