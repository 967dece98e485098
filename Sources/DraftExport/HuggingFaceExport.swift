import DraftErrors
import DraftFormats
import Foundation

/// The weight dtypes a Hugging Face export writes.
public enum HuggingFaceDType: String, CaseIterable, Sendable {
    case f32, f16, bf16

    var safetensors: SafeTensorsDType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }
    var torchName: String {
        switch self {
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        }
    }
}

/// Writes a draft as a Hugging Face `LlamaForCausalLM` directory (`config.json`, `model.safetensors`, the target's
/// tokenizer files, a model card), loadable by `transformers` (also as `assistant_model`), vLLM and TGI.
///
/// A tied draft writes only `model.embed_tokens.weight`: `tie_word_embeddings: true` makes the loaders share it as
/// the LM head, as Hugging Face's own tied checkpoints do. The tokenizer files are the ones the draft was trained
/// with: a `tokenizer.json` is copied with the `tokenizer_config.json` (chat template) and `special_tokens_map.json`
/// beside it; a tokenizer read from a GGUF file has no `tokenizer.json` to copy, which is refused.
public func exportHuggingFace(_ source: ExportSource, dtype: HuggingFaceDType, output: String,
                              overwrite: Bool) throws {
    guard let tokenizerPath = source.tokenizerPath, tokenizerPath.hasSuffix(".json") else {
        throw InputError("export --format hf: the draft's tokenizer '\(source.checkpoint.tokenizer)' is not a tokenizer.json, so no Hugging Face tokenizer files can be written for it (train with the target's tokenizer.json, or export --format gguf)")
    }
    let directory = try ExportDirectory(output: output, overwrite: overwrite)
    let config = source.checkpoint.config
    let tokenizer = source.tokenizer
    try directory.write { out in
        let hfConfig: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": config.vocabSize, "hidden_size": config.dim, "intermediate_size": config.ffnDim,
            "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
            "num_key_value_heads": config.kvHeads, "head_dim": config.headDim,
            "max_position_embeddings": config.maxSeqLen, "rms_norm_eps": config.normEps,
            "rope_theta": config.ropeTheta, "tie_word_embeddings": config.tieEmbeddings,
            "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "attention_dropout": 0.0,
            "initializer_range": 0.02, "use_cache": true, "torch_dtype": dtype.torchName,
            "bos_token_id": tokenizer.bosTokenID.map { Int($0) as Any } ?? NSNull(),
            "eos_token_id": Int(tokenizer.eosTokenID), "pad_token_id": Int(tokenizer.eosTokenID),
        ]
        try writeJSON(hfConfig, to: out.file("config.json"))

        // Every tensor is a slice of the flat parameter buffer, written straight from it.
        let parameters = try source.checkpoint.model.readParameters()
        try parameters.withUnsafeBufferPointer { flat in
            let entries = source.checkpoint.model.layout.slots.map { slot in
                (name: slot.name, shape: slot.shape,
                 values: UnsafeBufferPointer(rebasing: flat[slot.offset..<(slot.offset + slot.count)]))
            }
            try SafeTensorsFile.write(entries, metadata: ["format": "pt"], dtype: dtype.safetensors,
                                      to: out.file("model.safetensors"))
        }

        let tokenizerDirectory = URL(fileURLWithPath: tokenizerPath).deletingLastPathComponent()
        try FileManager.default.copyItem(at: URL(fileURLWithPath: tokenizerPath), to: out.file("tokenizer.json"))
        let eos = tokenizer.decode([tokenizer.eosTokenID])
        let bos = tokenizer.bosTokenID.map { tokenizer.decode([$0]) }
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let beside = tokenizerDirectory.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: beside.path) {
                try FileManager.default.copyItem(at: beside, to: out.file(name))
            } else if name == "tokenizer_config.json" {
                var object: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos,
                                             "pad_token": eos, "model_max_length": config.maxSeqLen,
                                             "clean_up_tokenization_spaces": false]
                if let bos { object["bos_token"] = bos }
                try writeJSON(object, to: out.file(name))
            } else {
                var object: [String: Any] = ["eos_token": eos, "pad_token": eos]
                if let bos { object["bos_token"] = bos }
                try writeJSON(object, to: out.file(name))
            }
        }
        try modelCard(source, format: "Hugging Face safetensors (\(dtype.rawValue))")
            .write(to: out.file("README.md"), atomically: false, encoding: .utf8)
    }
}

/// A short model card: what the draft is for, how it was made, and where its acceptance comes from.
func modelCard(_ source: ExportSource, format: String) -> String {
    let c = source.checkpoint
    return """
        # SwiftDraft draft model

        A \(c.config.parameterCount.formatted())-parameter Llama-architecture draft for speculative decoding, trained by
        SwiftDraft with its target's tokenizer (`\(c.tokenizer)`, fingerprint `\(c.tokenizerFingerprint.prefix(16))...`).

        - shape: dim \(c.config.dim), \(c.config.layers) layers, \(c.config.heads) heads (\(c.config.kvHeads) KV), ffn \(c.config.ffnDim), vocabulary \(c.config.vocabSize), context \(c.config.maxSeqLen)
        - recipe: checkpoint `\(c.url.lastPathComponent)`, step \(c.step), stage `\(c.stage)`
        - format: \(format)
        - acceptance against the target: not recorded in the checkpoint; measure it with
          `swiftdraft speculate --target <target> --draft <this directory or file> --prompts <prompts.jsonl>`
        """ + "\n"
}

func writeJSON(_ object: Any, to url: URL) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try (data + Data("\n".utf8)).write(to: url)
}
