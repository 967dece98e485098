import DraftDevice
import DraftModel

extension DecoderConfig {
    /// The inference shape of a SwiftDraft draft (`model:` config section); the token ids come from its tokenizer.
    public init(model: ModelConfig, bosTokenID: Int32?, eosTokenIDs: [Int32]) {
        self.init(architecture: model.arch, vocabSize: model.vocabSize, dim: model.dim, layers: model.layers,
                  heads: model.heads, kvHeads: model.kvHeads, headDim: model.headDim, ffnDim: model.ffnDim,
                  contextLength: model.maxSeqLen, normEps: Float(model.normEps),
                  ropeInverseFrequencies: DecoderConfig.ropeInverseFrequencies(theta: model.ropeTheta,
                                                                               headDim: model.headDim),
                  bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs)
    }
}

extension DecoderWeights {
    /// Views into a draft's flat parameter buffer, on the draft's own device: nothing is copied, and `owner` keeps
    /// the model (hence the buffer) alive. A subset head's ids come along (none when they are the whole vocabulary,
    /// whose head is the ordinary one).
    public init(llama model: LlamaModel) {
        let base = model.parameters
        func vector(_ slot: TensorSlot) -> DevicePointer<Float> { base.advanced(by: slot.offset) }
        func matrix(_ slot: TensorSlot) -> LinearWeight {
            .dense(base.advanced(by: slot.offset), rows: slot.shape[0], columns: slot.shape[1])
        }
        let layout = model.layout
        let layers = layout.layers.map { l in
            DecoderLayerWeights(inputNorm: vector(l.inputNorm), q: matrix(l.q), k: matrix(l.k), v: matrix(l.v),
                                o: matrix(l.o), postNorm: vector(l.postNorm), gate: matrix(l.gate), up: matrix(l.up),
                                down: matrix(l.down))
        }
        self.init(embedding: matrix(layout.embedding), layers: layers, finalNorm: vector(layout.finalNorm),
                  head: matrix(layout.head),
                  headIDs: model.headIDs.flatMap { $0.count < model.config.vocabSize ? $0 : nil }, owner: model)
    }
}
