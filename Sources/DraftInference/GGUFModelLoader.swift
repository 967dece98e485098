import DraftDevice
import DraftFormats
import DraftTokenizer
import Foundation

/// Loads a decoder from a GGUF file as llama.cpp writes it: architecture `llama`, `phi3` or `qwen2`, any tensor type
/// of `GGMLType`, the tokenizer and chat template from the file's metadata.
///
/// The file is memory-mapped. Quantized (and F16/BF16) matrices stay in their block type as views into the mapping;
/// only F32 matrices, norms and biases are copied to the device. A `llama` file's q/k rows, which llama.cpp's
/// converter stores as interleaved rotary pairs, are put back in Hugging Face's half-split order: F32 rows on upload,
/// quantized rows moved whole (blocks never re-encoded) into host memory the model owns, which costs the q and k
/// matrices' bytes once more in RSS (their mapped pages are then never touched). Every inconsistency between the
/// metadata and the tensors is a `FormatError` naming the file, the tensor or key, and what was expected.
public func loadGGUFModel(path: String, device: any Device) throws -> LoadedModel {
    let file = try GGUFFile(path: path)
    return try GGUFModelReader(file: file, device: device).load()
}

/// One load of one file: the metadata reads and tensor checks, with the file's name in every message.
private struct GGUFModelReader {
    let file: GGUFFile
    let device: any Device
    var path: String { file.path }

    func fail(_ what: String) -> FormatError { FormatError("\(path): \(what)") }

    func string(_ key: String) -> String? { file.metadata[key]?.string }

    func int(_ key: String) throws -> Int? {
        guard let v = file.metadata[key] else { return nil }
        guard let i = v.integer, i >= 0, i <= Int64(Int32.max) else {
            throw fail("metadata key '\(key)' is not a non-negative integer")
        }
        return Int(i)
    }

    func requiredInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw fail("metadata key '\(key)' is missing (expected an integer)") }
        guard v > 0 else { throw fail("metadata key '\(key)' is 0 (expected a positive integer)") }
        return v
    }

    func double(_ key: String) throws -> Double? {
        guard let v = file.metadata[key] else { return nil }
        guard let d = v.float ?? v.integer.map(Double.init), d.isFinite else {
            throw fail("metadata key '\(key)' is not a number")
        }
        return d
    }

    /// The tensor `name`, which must exist with exactly `expected` dimensions (ne0 first, as GGUF lists them).
    func tensor(_ name: String, _ expected: [Int], _ why: @autoclosure () -> String) throws -> GGUFTensorInfo {
        guard let t = file.tensor(named: name) else {
            throw fail("tensor '\(name)' is missing (expected \(shape(expected)) for \(why()))")
        }
        guard t.dimensions == expected else {
            throw fail("tensor '\(name)' has shape \(shape(t.dimensions)), expected \(shape(expected)) from \(why())")
        }
        return t
    }

    func shape(_ d: [Int]) -> String { "[" + d.map(String.init).joined(separator: ", ") + "]" }

    func load() throws -> LoadedModel {
        guard let archName = string("general.architecture") else {
            throw fail("metadata key 'general.architecture' is missing (expected one of \(ModelArchitecture.supportedNames))")
        }
        guard let arch = ModelArchitecture(rawValue: archName) else {
            throw fail("architecture '\(archName)' is not supported (supported: \(ModelArchitecture.supportedNames))")
        }
        let a = archName
        let dim = try requiredInt("\(a).embedding_length")
        let layers = try requiredInt("\(a).block_count")
        let heads = try requiredInt("\(a).attention.head_count")
        let kvHeads = try int("\(a).attention.head_count_kv") ?? heads
        let ffnDim = try requiredInt("\(a).feed_forward_length")
        let contextLength = try requiredInt("\(a).context_length")
        let headDim = try int("\(a).attention.key_length") ?? dim / heads
        let valueDim = try int("\(a).attention.value_length") ?? headDim
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw fail("'\(a).attention.head_count_kv' = \(kvHeads) does not divide head_count \(heads)")
        }
        guard headDim > 0, headDim % 2 == 0, valueDim == headDim else {
            throw fail("head size \(headDim) (value size \(valueDim)) is not supported (expected equal, even sizes)")
        }
        let ropeDim = try int("\(a).rope.dimension_count") ?? headDim
        guard ropeDim == headDim else {
            throw fail("'\(a).rope.dimension_count' = \(ropeDim): partial rotary embeddings are not supported (expected the head size \(headDim))")
        }
        guard let eps = try double("\(a).attention.layer_norm_rms_epsilon") else {
            throw fail("metadata key '\(a).attention.layer_norm_rms_epsilon' is missing (expected a float)")
        }
        let theta = try double("\(a).rope.freq_base") ?? 10_000
        let inverseFrequencies = try ropeFrequencies(arch: a, theta: theta, headDim: headDim)

        guard let vocab = try int("\(a).vocab_size") ?? file.tensor(named: "token_embd.weight")?.dimensions.last else {
            throw fail("tensor 'token_embd.weight' is missing (expected [\(dim), vocabulary size])")
        }
        let embd = try tensor("token_embd.weight", [dim, vocab], "embedding_length \(dim) and vocab_size \(vocab)")

        let storage = LoadedWeightStorage(device: device)
        storage.retained.append(file)
        var counter = WeightCounter()
        let embedding = try linear(embd, storage: storage, counter: &counter)

        let qRows = heads * headDim, kvRows = kvHeads * headDim
        var layerWeights: [DecoderLayerWeights] = []
        layerWeights.reserveCapacity(layers)
        for l in 0..<layers {
            let p = "blk.\(l)."
            let why = "\(a) metadata (embedding_length \(dim), head_count \(heads), head_count_kv \(kvHeads), feed_forward_length \(ffnDim))"
            let inputNorm = try vector(tensor(p + "attn_norm.weight", [dim], why), storage: storage, counter: &counter)
            let postNorm = try vector(tensor(p + "ffn_norm.weight", [dim], why), storage: storage, counter: &counter)
            var q, k, v: LinearWeight
            if arch == .phi3 {
                let qkv = try tensor(p + "attn_qkv.weight", [dim, qRows + 2 * kvRows], why)
                let fused = try linear(qkv, storage: storage, counter: &counter)
                q = try rowSlice(fused, 0..<qRows, storage: storage)
                k = try rowSlice(fused, qRows..<(qRows + kvRows), storage: storage)
                v = try rowSlice(fused, (qRows + kvRows)..<(qRows + 2 * kvRows), storage: storage)
            } else {
                let interleaved = arch.ggufRotaryRowsInterleaved
                q = try linear(tensor(p + "attn_q.weight", [dim, qRows], why), storage: storage, counter: &counter,
                               unpermuteHeads: interleaved ? heads : nil)
                k = try linear(tensor(p + "attn_k.weight", [dim, kvRows], why), storage: storage, counter: &counter,
                               unpermuteHeads: interleaved ? kvHeads : nil)
                v = try linear(tensor(p + "attn_v.weight", [dim, kvRows], why), storage: storage, counter: &counter)
            }
            var qBias, kBias, vBias: DevicePointer<Float>?
            if arch.hasAttentionBias {
                qBias = try vector(tensor(p + "attn_q.bias", [qRows], why), storage: storage, counter: &counter)
                kBias = try vector(tensor(p + "attn_k.bias", [kvRows], why), storage: storage, counter: &counter)
                vBias = try vector(tensor(p + "attn_v.bias", [kvRows], why), storage: storage, counter: &counter)
            }
            let o = try linear(tensor(p + "attn_output.weight", [qRows, dim], why), storage: storage, counter: &counter)
            let gate, up: LinearWeight
            if arch == .phi3 {
                // llama.cpp's phi3 graph runs swiglu on the fused product: the first half is the gate, the second
                // the up projection (Hugging Face's gate_up_proj.chunk(2) in the same order).
                let fused = try linear(tensor(p + "ffn_up.weight", [dim, 2 * ffnDim], why), storage: storage,
                                       counter: &counter)
                gate = try rowSlice(fused, 0..<ffnDim, storage: storage)
                up = try rowSlice(fused, ffnDim..<(2 * ffnDim), storage: storage)
            } else {
                gate = try linear(tensor(p + "ffn_gate.weight", [dim, ffnDim], why), storage: storage, counter: &counter)
                up = try linear(tensor(p + "ffn_up.weight", [dim, ffnDim], why), storage: storage, counter: &counter)
            }
            let down = try linear(tensor(p + "ffn_down.weight", [ffnDim, dim], why), storage: storage, counter: &counter)
            layerWeights.append(DecoderLayerWeights(inputNorm: inputNorm, q: q, k: k, v: v, o: o, qBias: qBias,
                                                    kBias: kBias, vBias: vBias, postNorm: postNorm, gate: gate,
                                                    up: up, down: down))
        }
        let finalNorm = try vector(tensor("output_norm.weight", [dim], "embedding_length \(dim)"), storage: storage,
                                   counter: &counter)
        let head: LinearWeight
        if file.tensor(named: "output.weight") != nil {
            head = try linear(tensor("output.weight", [dim, vocab], "embedding_length \(dim) and vocab_size \(vocab)"),
                              storage: storage, counter: &counter)
        } else {
            head = embedding  // tied: llama.cpp omits `output` and reuses the embedding
        }

        let tokenizer: any Tokenizer
        do {
            tokenizer = try loadTokenizer(path)
        } catch let e as TokenizerError {
            throw FormatError(e.description)
        }
        guard tokenizer.vocabSize <= vocab else {
            throw fail("the tokenizer has \(tokenizer.vocabSize) tokens but the embedding only \(vocab) rows")
        }
        let bos = try int("tokenizer.ggml.bos_token_id").map { Int32($0) } ?? tokenizer.bosTokenID
        let stops = try stopTokens(tokenizer: tokenizer, vocab: vocab)

        let config = DecoderConfig(architecture: archName, vocabSize: vocab, dim: dim, layers: layers, heads: heads,
                                   kvHeads: kvHeads, headDim: headDim, ffnDim: ffnDim, contextLength: contextLength,
                                   normEps: Float(eps), ropeInverseFrequencies: inverseFrequencies, bosTokenID: bos,
                                   eosTokenIDs: stops)
        let weights = DecoderWeights(embedding: embedding, layers: layerWeights, finalNorm: finalNorm, head: head,
                                     owner: storage)
        let typeName = counter.dominantType
        return LoadedModel(config: config, weights: weights, tokenizer: tokenizer,
                           chatTemplate: string("tokenizer.chat_template"), source: "\(path) (gguf \(archName) \(typeName))",
                           parameterCount: counter.parameters, weightBytes: counter.bytes)
    }

    /// Plain inverse frequencies, divided by Llama-3's per-frequency factors when the converter baked them into
    /// `rope_freqs.weight`, or by the factors `<arch>.rope.scaling.*` keys describe.
    func ropeFrequencies(arch a: String, theta: Double, headDim: Int) throws -> [Float] {
        var freqs = DecoderConfig.ropeInverseFrequencies(theta: theta, headDim: headDim)
        if let t = file.tensor(named: "rope_freqs.weight") {
            guard t.dimensions == [headDim / 2], t.type == .f32 else {
                throw fail("tensor 'rope_freqs.weight' is \(t.type.name) \(shape(t.dimensions)), expected F32 [\(headDim / 2)] (one factor per rotary frequency)")
            }
            let factors = file.data(t).bindMemory(to: Float.self)
            for i in freqs.indices {
                guard factors[i].isFinite, factors[i] > 0 else {
                    throw fail("tensor 'rope_freqs.weight' element \(i) is \(factors[i]) (expected a positive factor)")
                }
                freqs[i] /= factors[i]
            }
            return freqs
        }
        let type = string("\(a).rope.scaling.type") ?? "none"
        switch type {
        case "none":
            return freqs
        case "linear":
            guard let factor = try double("\(a).rope.scaling.factor"), factor > 0 else {
                throw fail("'\(a).rope.scaling.type' is linear but '\(a).rope.scaling.factor' is missing or not positive")
            }
            return freqs.map { $0 / Float(factor) }
        case "llama3":
            guard let factor = try double("\(a).rope.scaling.factor"),
                  let original = try double("\(a).rope.scaling.original_context_length") else {
                throw fail("'\(a).rope.scaling.type' is llama3 but '\(a).rope.scaling.factor' or '.original_context_length' is missing")
            }
            let low = try double("\(a).rope.scaling.low_freq_factor") ?? 1
            let high = try double("\(a).rope.scaling.high_freq_factor") ?? 4
            let factors = llama3RopeFactors(inverseFrequencies: freqs, factor: factor, lowFreqFactor: low,
                                            highFreqFactor: high, originalContext: original)
            return zip(freqs, factors).map { $0 / $1 }
        default:
            throw fail("'\(a).rope.scaling.type' = '\(type)' is not supported (expected none, linear or llama3)")
        }
    }

    /// End-of-sequence and end-of-turn ids: generation stops at either, so a chat reply ends with its turn.
    func stopTokens(tokenizer: any Tokenizer, vocab: Int) throws -> [Int32] {
        var ids: [Int32] = []
        func add(_ id: Int32?) { if let id, id >= 0, Int(id) < vocab, !ids.contains(id) { ids.append(id) } }
        add(try int("tokenizer.ggml.eos_token_id").map { Int32($0) } ?? tokenizer.eosTokenID)
        add(try int("tokenizer.ggml.eot_token_id").map { Int32($0) })
        add(try int("tokenizer.ggml.eom_token_id").map { Int32($0) })
        if let bpe = tokenizer as? BPETokenizer {
            for name in endOfTurnTokenNames { add(bpe.id(for: name)) }
        }
        return ids
    }

    /// A matrix `(rows = dimensions[1], columns = dimensions[0])`: F32 uploaded to the device, any other type a view
    /// into the mapping. `unpermuteHeads` undoes llama.cpp's interleaved rotary row order per head.
    func linear(_ t: GGUFTensorInfo, storage: LoadedWeightStorage, counter: inout WeightCounter,
                unpermuteHeads: Int? = nil) throws -> LinearWeight {
        let columns = t.dimensions[0], rows = t.dimensions[1]
        guard columns % t.type.blockElements == 0 else {
            throw fail("tensor '\(t.name)' has \(columns) columns, not a multiple of \(t.type.name)'s block of \(t.type.blockElements)")
        }
        counter.add(t)
        let bytes = file.data(t)
        let rowBytes = columns / t.type.blockElements * t.type.blockBytes
        guard bytes.count >= rows * rowBytes, let base = bytes.baseAddress else {
            throw fail("tensor '\(t.name)' holds \(bytes.count) bytes, expected \(rows * rowBytes)")
        }
        if t.type == .f32 {
            let values = UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: rows * columns)
            let pointer: DevicePointer<Float>
            if let heads = unpermuteHeads {
                pointer = try storage.upload(RotaryRowPermutation.permute(Array(values), rows: rows, columns: columns,
                                                                          heads: heads, direction: .ggufToHF,
                                                                          what: "\(path): tensor '\(t.name)'"))
            } else {
                pointer = try storage.upload(values)
            }
            return .dense(pointer, rows: rows, columns: columns)
        }
        if let heads = unpermuteHeads {
            // Whole blocks move, never re-encoded: the rows are bit-identical to the file's, in another order.
            let owned = storage.ownedHostBuffer(bytes: rows * rowBytes)
            try RotaryRowPermutation.permuteRows(base, into: owned, rows: rows, rowBytes: rowBytes, heads: heads,
                                                 direction: .ggufToHF, what: "\(path): tensor '\(t.name)'")
            return .quantized(QuantizedMatrix(type: t.type, rows: rows, columns: columns, data: UnsafeRawPointer(owned)))
        }
        return .quantized(QuantizedMatrix(type: t.type, rows: rows, columns: columns, data: base))
    }

    /// Rows `range` of a fused matrix (phi3's qkv and gate_up): a view for quantized weights, a device-side view for F32.
    func rowSlice(_ w: LinearWeight, _ range: Range<Int>, storage: LoadedWeightStorage) throws -> LinearWeight {
        switch w {
        case .quantized(let m):
            return .quantized(m.rows(range))
        case .dense(let p, _, let columns):
            return .dense(p.advanced(by: range.lowerBound * columns), rows: range.count, columns: columns)
        }
    }

    /// A norm weight or bias, uploaded as fp32.
    func vector(_ t: GGUFTensorInfo, storage: LoadedWeightStorage, counter: inout WeightCounter) throws -> DevicePointer<Float> {
        guard t.type == .f32 else {
            throw fail("tensor '\(t.name)' is \(t.type.name), expected F32 (norms and biases are stored unquantized)")
        }
        counter.add(t)
        let bytes = file.data(t)
        guard bytes.count >= t.elementCount * 4 else {
            throw fail("tensor '\(t.name)' holds \(bytes.count) bytes, expected \(t.elementCount * 4)")
        }
        return try storage.upload(UnsafeBufferPointer(start: bytes.baseAddress!.assumingMemoryBound(to: Float.self),
                                                      count: t.elementCount))
    }
}

/// Token names that end a chat turn in the vocabularies of the supported families (ChatML, Llama-3, Phi-3).
let endOfTurnTokenNames = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|endoftext|>"]

/// Parameter and byte totals of the weights as stored, and which type holds most of them (for the model's label).
struct WeightCounter {
    var parameters = 0
    var bytes = 0
    var bytesByType: [GGMLType: Int] = [:]

    mutating func add(_ t: GGUFTensorInfo) {
        parameters += t.elementCount
        bytes += t.byteCount
        bytesByType[t.type, default: 0] += t.byteCount
    }

    var dominantType: String { bytesByType.max { $0.value < $1.value }?.key.name ?? "empty" }
}
