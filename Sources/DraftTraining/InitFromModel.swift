import DraftCheckpoint
import DraftErrors
import DraftFormats
import DraftModel
import DraftTokenizer
import Foundation

/// The weights `train --init-from M` starts a run from: a Llama-architecture model as a Hugging Face directory
/// (`config.json` + `model.safetensors` or a sharded index, F32/F16/BF16), a GGUF file (any tensor type, dequantized;
/// q/k rows put back from GGUF's interleaved rotary order), or a SwiftDraft checkpoint (its `/model` only).
///
/// Only the weights are taken: the run's own config decides the shape, so every tensor must have exactly the shape
/// the config gives it, and the error names the tensor when one does not. The optimizer, data order and step start
/// fresh. A model that carries a tokenizer must carry the run's (same fingerprint), since a draft's rows mean tokens.
public enum InitFromModel {
    /// The flat parameter buffer (in `ParameterLayout(config)` order) read from `path`.
    public static func parameters(from path: String, config: ModelConfig, tokenizer: any Tokenizer) throws -> [Float] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw InputError("--init-from \(path): no such file or directory (expected a Hugging Face model directory, a .gguf or a checkpoint .h5)")
        }
        let layout = ParameterLayout(config)
        if isDirectory.boolValue { return try huggingFace(directory: path, layout: layout, config: config, tokenizer: tokenizer) }
        if path.hasSuffix(".gguf") { return try gguf(path: path, layout: layout, config: config, tokenizer: tokenizer) }
        if path.hasSuffix(".h5") { return try checkpoint(path: path, layout: layout, tokenizer: tokenizer) }
        throw InputError("--init-from \(path): expected a Hugging Face model directory, a .gguf file or a checkpoint .h5")
    }

    static func checkTokenizer(_ modelTokenizer: String, of path: String, against tokenizer: any Tokenizer) throws {
        let theirs = try loadTokenizer(modelTokenizer)
        guard tokenizer.recognizes(fingerprint: theirs.fingerprint) else {
            throw InputError("--init-from \(path): its tokenizer (\(modelTokenizer), fingerprint \(theirs.fingerprint.prefix(16))...) is not the config's (\(tokenizer.fingerprint.prefix(16))...)")
        }
    }

    static func huggingFace(directory: String, layout: ParameterLayout, config: ModelConfig,
                            tokenizer: any Tokenizer) throws -> [Float] {
        let url = URL(fileURLWithPath: directory)
        let configURL = url.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configURL.path),
              let hf = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw InputError("--init-from \(configURL.path): cannot be read as a JSON object (expected a Hugging Face config.json)")
        }
        let classes = hf["architectures"] as? [String] ?? []
        guard classes.first == "LlamaForCausalLM" else {
            throw InputError("--init-from \(configURL.path): architectures is \(classes), expected [\"LlamaForCausalLM\"]")
        }
        // Shapes cannot tell head counts apart (4 heads of 16 and 2 of 32 are the same matrices), but attention can.
        for (key, expected) in [("num_attention_heads", config.heads), ("num_key_value_heads", config.kvHeads)] {
            if let value = hf[key] as? Int, value != expected {
                throw InputError("--init-from \(configURL.path): \(key) is \(value), the config's model has \(expected)")
            }
        }
        let tokenizerFile = url.appendingPathComponent("tokenizer.json").path
        if FileManager.default.fileExists(atPath: tokenizerFile) {
            try checkTokenizer(tokenizerFile, of: directory, against: tokenizer)
        }
        let weights = try SafeTensorsModel(at: url)
        var parameters = [Float](repeating: 0, count: layout.count)
        for slot in layout.slots {
            guard let (file, entry) = weights.entry(slot.name) else {
                throw InputError("--init-from \(directory): tensor '\(slot.name)' is missing (expected shape \(slot.shape))")
            }
            guard entry.shape == slot.shape else {
                throw InputError("--init-from \(file.path): tensor '\(slot.name)' has shape \(entry.shape), the config's model expects \(slot.shape)")
            }
            parameters.replaceSubrange(slot.offset..<(slot.offset + slot.count), with: try file.tensor(slot.name))
        }
        if let extra = weights.names.first(where: { $0.hasPrefix("model.layers.\(config.layers).") }) {
            throw InputError("--init-from \(directory): tensor '\(extra)' is beyond the config's \(config.layers) layers")
        }
        if config.tieEmbeddings, let (file, _) = weights.entry("lm_head.weight"),
           try file.tensor("lm_head.weight") != Array(parameters[layout.embedding.offset..<(layout.embedding.offset + layout.embedding.count)]) {
            throw InputError("--init-from \(file.path): tensor 'lm_head.weight' is its own LM head, but model.tie_embeddings is true (set it to false to keep the head)")
        }
        return parameters
    }

    static func gguf(path: String, layout: ParameterLayout, config: ModelConfig, tokenizer: any Tokenizer) throws -> [Float] {
        let file = try GGUFFile(path: path)
        let architecture = file.metadata["general.architecture"]?.string
        guard architecture == "llama" else {
            throw InputError("--init-from \(path): general.architecture is \(architecture ?? "missing"), expected llama")
        }
        // The rotary row order depends on the head counts, which the tensor shapes alone do not pin down.
        for (key, expected) in [("llama.attention.head_count", config.heads), ("llama.attention.head_count_kv", config.kvHeads)] {
            if let value = file.metadata[key]?.integer, Int(value) != expected {
                throw InputError("--init-from \(path): \(key) is \(value), the config's model has \(expected)")
            }
        }
        if file.metadata["tokenizer.ggml.model"] != nil { try checkTokenizer(path, of: path, against: tokenizer) }
        var parameters = [Float](repeating: 0, count: layout.count)
        func read(_ name: String, into slot: TensorSlot, rotaryHeads: Int? = nil) throws {
            guard let t = file.tensor(named: name) else {
                throw InputError("--init-from \(path): tensor '\(name)' is missing (expected shape \(slot.shape) for \(slot.name))")
            }
            guard t.rowMajorShape == slot.shape else {
                throw InputError("--init-from \(path): tensor '\(name)' has shape \(t.rowMajorShape), the config's model expects \(slot.shape) for \(slot.name)")
            }
            var values = file.floats(t)
            if let heads = rotaryHeads {
                values = try RotaryRowPermutation.permute(values, rows: slot.shape[0], columns: slot.shape[1], heads: heads,
                                                          direction: .ggufToHF, what: "\(path): tensor '\(name)'")
            }
            parameters.replaceSubrange(slot.offset..<(slot.offset + slot.count), with: values)
        }
        try read("token_embd.weight", into: layout.embedding)
        for (l, layer) in layout.layers.enumerated() {
            let p = "blk.\(l)."
            try read(p + "attn_norm.weight", into: layer.inputNorm)
            try read(p + "attn_q.weight", into: layer.q, rotaryHeads: config.heads)
            try read(p + "attn_k.weight", into: layer.k, rotaryHeads: config.kvHeads)
            try read(p + "attn_v.weight", into: layer.v)
            try read(p + "attn_output.weight", into: layer.o)
            try read(p + "ffn_norm.weight", into: layer.postNorm)
            try read(p + "ffn_gate.weight", into: layer.gate)
            try read(p + "ffn_up.weight", into: layer.up)
            try read(p + "ffn_down.weight", into: layer.down)
        }
        try read("output_norm.weight", into: layout.finalNorm)
        if !config.tieEmbeddings {
            try read("output.weight", into: layout.head)
        } else if file.tensor(named: "output.weight") != nil {
            throw InputError("--init-from \(path): tensor 'output.weight' is its own LM head, but model.tie_embeddings is true (set it to false to keep the head)")
        }
        if let extra = file.tensors.first(where: { $0.name.hasPrefix("blk.\(config.layers).") }) {
            throw InputError("--init-from \(path): tensor '\(extra.name)' is beyond the config's \(config.layers) layers")
        }
        return parameters
    }

    static func checkpoint(path: String, layout: ParameterLayout, tokenizer: any Tokenizer) throws -> [Float] {
        let reader = try CheckpointReader(url: URL(fileURLWithPath: path))
        let fingerprint = try reader.string(CheckpointCodec.Key.tokenizerFingerprint)
        guard tokenizer.recognizes(fingerprint: fingerprint) else {
            throw InputError("--init-from \(path): tokenizer_sha256 is \(fingerprint.prefix(16))..., the config's tokenizer is \(tokenizer.fingerprint.prefix(16))...")
        }
        return try CheckpointCodec.decodeModel(reader, expecting: layout, describing: "the config's model").parameters
    }
}
