import DraftDevice
import DraftFormats
import DraftTokenizer
import Foundation

/// Loads a Hugging Face model directory: `config.json` (`LlamaForCausalLM`, with `rope_scaling` type `llama3` or
/// `linear`; `Phi3ForCausalLM`; `Qwen2ForCausalLM`), the weights from `model.safetensors` or the shards a
/// `model.safetensors.index.json` names (F32, F16 or BF16, converted to fp32 device weights), the tokenizer from
/// `tokenizer.json` and the chat template from `tokenizer_config.json` (or `chat_template.jinja`).
///
/// Hugging Face rows are already in the half-split rotary order the engine uses. Missing or misshapen tensors and bad
/// config values are `FormatError`s naming the file and the key or tensor.
public func loadHFModel(directory: String, device: any Device) throws -> LoadedModel {
    try HFModelReader(directory: directory, device: device).load()
}

private struct HFModelReader {
    let directory: String
    let device: any Device

    var configPath: String { (directory as NSString).appendingPathComponent("config.json") }
    func file(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    func readJSON(_ path: String) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError("\(path): cannot be read (expected a JSON file in the model directory)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FormatError("\(path): is not a JSON object")
        }
        return object
    }

    func load() throws -> LoadedModel {
        let config = try readJSON(configPath)
        func fail(_ what: String) -> FormatError { FormatError("\(configPath): \(what)") }
        func int(_ key: String, in j: [String: Any]? = nil) throws -> Int? {
            guard let v = (j ?? config)[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, Double(n.intValue) == n.doubleValue, n.intValue >= 0 else {
                throw fail("'\(key)' is \(v), expected a non-negative integer")
            }
            return n.intValue
        }
        func required(_ key: String) throws -> Int {
            guard let v = try int(key), v > 0 else { throw fail("'\(key)' is missing or 0 (expected a positive integer)") }
            return v
        }
        func double(_ key: String, in j: [String: Any]? = nil) throws -> Double? {
            guard let v = (j ?? config)[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, n.doubleValue.isFinite else { throw fail("'\(key)' is \(v), expected a number") }
            return n.doubleValue
        }

        let classes = config["architectures"] as? [String] ?? []
        guard let className = classes.first else {
            throw fail("'architectures' is missing (expected one of \(ModelArchitecture.huggingFaceClasses.keys.sorted().joined(separator: ", ")))")
        }
        guard let arch = ModelArchitecture.huggingFaceClasses[className] else {
            throw fail("architecture '\(className)' is not supported (supported: \(ModelArchitecture.huggingFaceClasses.keys.sorted().joined(separator: ", ")))")
        }
        let dim = try required("hidden_size")
        let layers = try required("num_hidden_layers")
        let heads = try required("num_attention_heads")
        let kvHeads = try int("num_key_value_heads") ?? heads
        let ffnDim = try required("intermediate_size")
        let vocab = try required("vocab_size")
        let contextLength = try required("max_position_embeddings")
        let headDim = try int("head_dim") ?? dim / heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw fail("'num_key_value_heads' = \(kvHeads) does not divide 'num_attention_heads' = \(heads)")
        }
        guard headDim > 0, headDim % 2 == 0 else { throw fail("head size \(headDim) is not a positive even number") }
        if let partial = try double("partial_rotary_factor"), partial != 1 {
            throw fail("'partial_rotary_factor' = \(partial): partial rotary embeddings are not supported (expected 1.0)")
        }
        let eps = try double("rms_norm_eps") ?? 1e-6
        // transformers 5 writes `rope_parameters` (theta inside); earlier versions `rope_theta` and `rope_scaling`.
        let ropeParameters = config["rope_parameters"] as? [String: Any]
        let ropeScaling = config["rope_scaling"] as? [String: Any] ?? ropeParameters
        let theta = try double("rope_theta") ?? (try ropeParameters.flatMap { try double("rope_theta", in: $0) }) ?? 10_000
        var inverseFrequencies = DecoderConfig.ropeInverseFrequencies(theta: theta, headDim: headDim)
        if let scaling = ropeScaling {
            let type = (scaling["rope_type"] as? String) ?? (scaling["type"] as? String) ?? "default"
            switch type {
            case "default":
                break
            case "linear":
                guard let factor = try double("factor", in: scaling), factor > 0 else {
                    throw fail("'rope_scaling' of type linear needs a positive 'factor'")
                }
                inverseFrequencies = inverseFrequencies.map { $0 / Float(factor) }
            case "llama3":
                guard let factor = try double("factor", in: scaling),
                      let original = try double("original_max_position_embeddings", in: scaling) else {
                    throw fail("'rope_scaling' of type llama3 needs 'factor' and 'original_max_position_embeddings'")
                }
                let factors = llama3RopeFactors(inverseFrequencies: inverseFrequencies, factor: factor,
                                                lowFreqFactor: try double("low_freq_factor", in: scaling) ?? 1,
                                                highFreqFactor: try double("high_freq_factor", in: scaling) ?? 4,
                                                originalContext: original)
                inverseFrequencies = zip(inverseFrequencies, factors).map { $0 / $1 }
            default:
                throw fail("'rope_scaling' type '\(type)' is not supported (expected default, linear or llama3)")
            }
        }
        let tied = (config["tie_word_embeddings"] as? Bool) ?? false

        let tensors = try SafeTensorsShards(directory: directory)
        let storage = LoadedWeightStorage(device: device)
        var parameters = 0
        func matrix(_ name: String, _ rows: Int, _ columns: Int) throws -> (LinearWeight, DevicePointer<Float>) {
            let values = try tensors.floats(name, shape: [rows, columns])
            parameters += values.count
            let p = try storage.upload(values)
            return (.dense(p, rows: rows, columns: columns), p)
        }
        func linear(_ name: String, _ rows: Int, _ columns: Int) throws -> LinearWeight { try matrix(name, rows, columns).0 }
        func vector(_ name: String, _ count: Int) throws -> DevicePointer<Float> {
            let values = try tensors.floats(name, shape: [count])
            parameters += values.count
            return try storage.upload(values)
        }

        let qRows = heads * headDim, kvRows = kvHeads * headDim
        let embedding = try linear("model.embed_tokens.weight", vocab, dim)
        var layerWeights: [DecoderLayerWeights] = []
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            let q, k, v: LinearWeight
            if arch == .phi3 {
                let (_, fused) = try matrix(p + "self_attn.qkv_proj.weight", qRows + 2 * kvRows, dim)
                q = .dense(fused, rows: qRows, columns: dim)
                k = .dense(fused.advanced(by: qRows * dim), rows: kvRows, columns: dim)
                v = .dense(fused.advanced(by: (qRows + kvRows) * dim), rows: kvRows, columns: dim)
            } else {
                q = try linear(p + "self_attn.q_proj.weight", qRows, dim)
                k = try linear(p + "self_attn.k_proj.weight", kvRows, dim)
                v = try linear(p + "self_attn.v_proj.weight", kvRows, dim)
            }
            var qBias, kBias, vBias: DevicePointer<Float>?
            if arch.hasAttentionBias {
                qBias = try vector(p + "self_attn.q_proj.bias", qRows)
                kBias = try vector(p + "self_attn.k_proj.bias", kvRows)
                vBias = try vector(p + "self_attn.v_proj.bias", kvRows)
            }
            let o = try linear(p + "self_attn.o_proj.weight", dim, qRows)
            let gate, up: LinearWeight
            if arch == .phi3 {
                // Phi3MLP: gate_up_proj(x).chunk(2) gives the gate first, then the up projection.
                let (_, fused) = try matrix(p + "mlp.gate_up_proj.weight", 2 * ffnDim, dim)
                gate = .dense(fused, rows: ffnDim, columns: dim)
                up = .dense(fused.advanced(by: ffnDim * dim), rows: ffnDim, columns: dim)
            } else {
                gate = try linear(p + "mlp.gate_proj.weight", ffnDim, dim)
                up = try linear(p + "mlp.up_proj.weight", ffnDim, dim)
            }
            let down = try linear(p + "mlp.down_proj.weight", dim, ffnDim)
            layerWeights.append(DecoderLayerWeights(
                inputNorm: try vector(p + "input_layernorm.weight", dim), q: q, k: k, v: v, o: o,
                qBias: qBias, kBias: kBias, vBias: vBias,
                postNorm: try vector(p + "post_attention_layernorm.weight", dim), gate: gate, up: up, down: down))
        }
        let finalNorm = try vector("model.norm.weight", dim)
        let head = tied && !tensors.contains("lm_head.weight") ? embedding : try linear("lm_head.weight", vocab, dim)

        let tokenizerPath = file("tokenizer.json")
        let tokenizer: any Tokenizer
        do {
            tokenizer = try loadTokenizer(tokenizerPath)
        } catch let e as TokenizerError {
            throw FormatError(e.description)
        }
        guard tokenizer.vocabSize <= vocab else {
            throw FormatError("\(tokenizerPath): \(tokenizer.vocabSize) tokens, but \(configPath) has vocab_size \(vocab)")
        }
        var stops: [Int32] = []
        func addStop(_ id: Int?) { if let id, id < vocab, !stops.contains(Int32(id)) { stops.append(Int32(id)) } }
        if let list = config["eos_token_id"] as? [NSNumber] {
            list.forEach { addStop($0.intValue) }
        } else {
            addStop(try int("eos_token_id"))
        }
        addStop(Int(tokenizer.eosTokenID))
        if let bpe = tokenizer as? BPETokenizer {
            for name in endOfTurnTokenNames { addStop(bpe.id(for: name).map(Int.init)) }
        }
        let bos = try int("bos_token_id").map { Int32($0) } ?? tokenizer.bosTokenID

        let decoder = DecoderConfig(architecture: arch.rawValue, vocabSize: vocab, dim: dim, layers: layers,
                                    heads: heads, kvHeads: kvHeads, headDim: headDim, ffnDim: ffnDim,
                                    contextLength: contextLength, normEps: Float(eps),
                                    ropeInverseFrequencies: inverseFrequencies, bosTokenID: bos, eosTokenIDs: stops)
        let weights = DecoderWeights(embedding: embedding, layers: layerWeights, finalNorm: finalNorm, head: head,
                                     owner: storage)
        return LoadedModel(config: decoder, weights: weights, tokenizer: tokenizer, chatTemplate: try chatTemplate(),
                           source: "\(directory) (hf \(className) \(tensors.dtypeSummary))",
                           parameterCount: parameters, weightBytes: parameters * MemoryLayout<Float>.stride)
    }

    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates of which `default` is
    /// taken), else transformers 5's `chat_template.jinja` beside it.
    func chatTemplate() throws -> String? {
        let configPath = file("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configPath) {
            let j = try readJSON(configPath)
            if let s = j["chat_template"] as? String { return s }
            if let list = j["chat_template"] as? [[String: Any]] {
                let named = list.first { ($0["name"] as? String) == "default" } ?? list.first
                if let s = named?["template"] as? String { return s }
            }
        }
        let jinja = file("chat_template.jinja")
        if let data = FileManager.default.contents(atPath: jinja) { return String(decoding: data, as: UTF8.self) }
        return nil
    }
}

/// The weights of a model directory (formats' `SafeTensorsModel`: one file or a sharded index), read by name with
/// the shape `config.json` implies, converted to fp32.
private struct SafeTensorsShards {
    let model: SafeTensorsModel

    init(directory: String) throws {
        let url = URL(fileURLWithPath: directory)
        let index = url.appendingPathComponent(SafeTensorsModel.indexFileName).path
        let single = url.appendingPathComponent(SafeTensorsModel.singleFileName).path
        guard FileManager.default.fileExists(atPath: index) || FileManager.default.fileExists(atPath: single) else {
            throw FormatError("\(directory): no model.safetensors or model.safetensors.index.json (expected the model's weights)")
        }
        model = try SafeTensorsModel(at: url)
    }

    func contains(_ name: String) -> Bool { model.entry(name) != nil }

    var dtypeSummary: String {
        Array(Set(model.shards.flatMap { $0.entries.values.map(\.dtype) })).sorted().joined(separator: "+")
    }

    /// The tensor `name` as fp32, which must have exactly `shape`.
    func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let (file, entry) = model.entry(name) else {
            throw FormatError("\(model.shards.first?.path ?? "model.safetensors"): tensor '\(name)' is missing (expected shape \(shape))")
        }
        guard entry.shape == shape else {
            throw FormatError("\(file.path): tensor '\(name)' has shape \(entry.shape), expected \(shape) from config.json")
        }
        return try file.tensor(name)
    }
}
