import DraftDevice
import DraftTokenizer

/// A model ready for inference, whatever it was loaded from (a GGUF file, a Hugging Face directory, a SwiftDraft
/// checkpoint or run directory): its shape, its weights on a device, its tokenizer and, for instruct models, its chat
/// template.
public struct LoadedModel: @unchecked Sendable {
    public var config: DecoderConfig
    public var weights: DecoderWeights
    public var tokenizer: any Tokenizer
    /// The Jinja chat template text (GGUF `tokenizer.chat_template` or `tokenizer_config.json`), when the model has one.
    public var chatTemplate: String?
    /// What was loaded, for messages and manifests: the path and its kind (`gguf Q4_1`, `hf`, `checkpoint step 120`).
    public var source: String
    /// Parameters, and bytes the weights take as stored and run (for the speculative cost ratio c).
    public var parameterCount: Int
    public var weightBytes: Int

    public init(config: DecoderConfig, weights: DecoderWeights, tokenizer: any Tokenizer, chatTemplate: String?,
                source: String, parameterCount: Int, weightBytes: Int) {
        self.config = config
        self.weights = weights
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.source = source
        self.parameterCount = parameterCount
        self.weightBytes = weightBytes
    }
}
