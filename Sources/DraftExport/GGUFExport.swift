import DraftErrors
import DraftFormats
import DraftModel
import DraftTokenizer
import Foundation

/// The tensor types a GGUF export writes for matrices (norm weights are always F32, as llama.cpp's converter does).
public enum GGUFExportType: String, CaseIterable, Sendable {
    case f32, f16, q8_0

    var ggml: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        }
    }
    /// `general.file_type` (llama.cpp's `llama_ftype`): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7.
    var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q8_0: return 7
        }
    }
}

/// Writes a draft as one GGUF file (`<output>/draft-<type>.gguf`) that llama.cpp loads as a model or as a
/// speculative draft (`-md`): `general.architecture = llama` with the hyperparameter keys llama.cpp reads, the
/// target's `tokenizer.*` metadata copied verbatim (so llama.cpp's draft/target vocabulary check passes), q/k rows in
/// GGUF's interleaved rotary order (`RotaryRowPermutation`), tensors named as llama.cpp's converter names them.
///
/// `tokenizerGGUF` is the GGUF whose tokenizer metadata is copied: the target (`--target`), or the draft's own
/// tokenizer file when it is a GGUF. Its tokenizer must be the draft's (same fingerprint).
public func exportGGUF(_ source: ExportSource, type: GGUFExportType, tokenizerGGUF: String?, output: String,
                       overwrite: Bool) throws -> URL {
    guard let vocabularyPath = tokenizerGGUF ?? (source.tokenizerPath?.hasSuffix(".gguf") == true ? source.tokenizerPath : nil) else {
        throw InputError("export --format gguf: the draft's tokenizer '\(source.checkpoint.tokenizer)' is not a GGUF; pass --target <the target's .gguf> to copy its tokenizer metadata")
    }
    let vocabulary = try GGUFFile(path: vocabularyPath)
    let targetTokenizer = try loadTokenizer(vocabularyPath)
    guard targetTokenizer.fingerprint == source.tokenizer.fingerprint else {
        throw InputError("--target \(vocabularyPath): its tokenizer (fingerprint \(targetTokenizer.fingerprint.prefix(16))...) is not the draft's (\(source.tokenizer.fingerprint.prefix(16))..., \(source.checkpoint.tokenizer))")
    }
    let config = source.checkpoint.config
    let matrixType = type.ggml
    for (name, columns) in [("dim", config.dim), ("ffn_dim", config.ffnDim), ("heads x head_dim", config.heads * config.headDim)]
    where columns % matrixType.blockElements != 0 {
        throw InputError("export --dtype \(type.rawValue): model \(name) \(columns) is not a multiple of the \(matrixType.name) block of \(matrixType.blockElements)")
    }

    var writer = GGUFWriter()
    let a = "llama"
    try writer.add("general.architecture", .string(a))
    try writer.add("general.name", .string("swiftdraft-draft"))
    try writer.add("general.file_type", .uint32(type.fileType))
    try writer.add("\(a).vocab_size", .uint32(UInt32(config.vocabSize)))
    try writer.add("\(a).context_length", .uint32(UInt32(config.maxSeqLen)))
    try writer.add("\(a).embedding_length", .uint32(UInt32(config.dim)))
    try writer.add("\(a).block_count", .uint32(UInt32(config.layers)))
    try writer.add("\(a).feed_forward_length", .uint32(UInt32(config.ffnDim)))
    try writer.add("\(a).rope.dimension_count", .uint32(UInt32(config.headDim)))
    try writer.add("\(a).rope.freq_base", .float32(Float(config.ropeTheta)))
    try writer.add("\(a).attention.head_count", .uint32(UInt32(config.heads)))
    try writer.add("\(a).attention.head_count_kv", .uint32(UInt32(config.kvHeads)))
    try writer.add("\(a).attention.key_length", .uint32(UInt32(config.headDim)))
    try writer.add("\(a).attention.value_length", .uint32(UInt32(config.headDim)))
    try writer.add("\(a).attention.layer_norm_rms_epsilon", .float32(Float(config.normEps)))
    for key in vocabulary.metadataKeys where key.hasPrefix("tokenizer.") {
        if let value = vocabulary.metadata[key] { try writer.add(key, value) }
    }

    let layout = source.checkpoint.model.layout
    let parameters = try source.checkpoint.model.readParameters()
    func values(_ slot: TensorSlot) -> [Float] { Array(parameters[slot.offset..<(slot.offset + slot.count)]) }
    func matrix(_ name: String, _ slot: TensorSlot, rotaryHeads: Int? = nil) throws {
        var v = values(slot)
        if let heads = rotaryHeads {
            v = try RotaryRowPermutation.permute(v, rows: slot.shape[0], columns: slot.shape[1], heads: heads,
                                                 direction: .hfToGGUF, what: name)
        }
        try writer.addTensor(name: name, shape: slot.shape, values: v, type: matrixType)
    }
    func vector(_ name: String, _ slot: TensorSlot) throws {
        try writer.addTensor(name: name, shape: slot.shape, values: values(slot), type: .f32)
    }
    try matrix("token_embd.weight", layout.embedding)
    for (l, layer) in layout.layers.enumerated() {
        let p = "blk.\(l)."
        try vector(p + "attn_norm.weight", layer.inputNorm)
        try matrix(p + "attn_q.weight", layer.q, rotaryHeads: config.heads)
        try matrix(p + "attn_k.weight", layer.k, rotaryHeads: config.kvHeads)
        try matrix(p + "attn_v.weight", layer.v)
        try matrix(p + "attn_output.weight", layer.o)
        try vector(p + "ffn_norm.weight", layer.postNorm)
        try matrix(p + "ffn_gate.weight", layer.gate)
        try matrix(p + "ffn_up.weight", layer.up)
        try matrix(p + "ffn_down.weight", layer.down)
    }
    try vector("output_norm.weight", layout.finalNorm)
    if !config.tieEmbeddings { try matrix("output.weight", layout.head) }

    let directory = try ExportDirectory(output: output, overwrite: overwrite)
    let name = "draft-\(type.rawValue).gguf"
    try directory.write { out in
        try writer.write(to: out.file(name))
        try modelCard(source, format: "GGUF \(matrixType.name) (llama.cpp: -md \(name))")
            .write(to: out.file("README.md"), atomically: false, encoding: .utf8)
    }
    return directory.output.appendingPathComponent(name)
}
