/// One parameter tensor's place in the flat parameter (and gradient) buffer.
public struct TensorSlot: Sendable, Equatable {
    /// The Hugging Face Llama name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    public let name: String
    public let shape: [Int]
    /// Offset in elements from the start of the flat buffer.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// AdamW decays matrices (embeddings and projections) but never RMSNorm weights: a norm weight is a per-channel
    /// gain, and decaying it towards 0 fights the normalisation itself (the rule of GPT-2, llm.c and most Llama
    /// recipes: decay iff the tensor has two dimensions).
    public var decays: Bool { shape.count >= 2 }
}

/// Offsets of one decoder layer's tensors in the flat buffer.
public struct LayerSlots: Sendable {
    public let inputNorm, q, k, v, o, postNorm, gate, up, down: TensorSlot
}

/// The flat parameter buffer's layout: embedding first, then the layers in order, then the final norm and (untied)
/// LM head. Backward finishes gradients from the end of this buffer towards its start, which is the order the
/// bucketed all-reduce wants.
public struct ParameterLayout: Sendable {
    public let slots: [TensorSlot]
    public let embedding: TensorSlot
    public let layers: [LayerSlots]
    public let finalNorm: TensorSlot
    /// The output projection: its own tensor, or the embedding when tied.
    public let head: TensorSlot
    public let count: Int

    public init(_ config: ModelConfig) {
        var slots: [TensorSlot] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) -> TensorSlot {
            let slot = TensorSlot(name: name, shape: shape, offset: offset)
            offset += slot.count
            slots.append(slot)
            return slot
        }
        let c = config.dim, qDim = config.heads * config.headDim, kvDim = config.kvDim, f = config.ffnDim
        embedding = add("model.embed_tokens.weight", [config.vocabSize, c])
        layers = (0..<config.layers).map { l in
            let p = "model.layers.\(l)."
            return LayerSlots(inputNorm: add(p + "input_layernorm.weight", [c]),
                              q: add(p + "self_attn.q_proj.weight", [qDim, c]),
                              k: add(p + "self_attn.k_proj.weight", [kvDim, c]),
                              v: add(p + "self_attn.v_proj.weight", [kvDim, c]),
                              o: add(p + "self_attn.o_proj.weight", [c, qDim]),
                              postNorm: add(p + "post_attention_layernorm.weight", [c]),
                              gate: add(p + "mlp.gate_proj.weight", [f, c]),
                              up: add(p + "mlp.up_proj.weight", [f, c]),
                              down: add(p + "mlp.down_proj.weight", [c, f]))
        }
        finalNorm = add("model.norm.weight", [c])
        head = config.tieEmbeddings ? embedding : add("lm_head.weight", [config.vocabSize, c])
        count = offset
        self.slots = slots
    }
}
