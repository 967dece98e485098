import DraftCheckpoint
import DraftDevice
import DraftErrors
import DraftTokenizer
import Foundation

/// Loads any model SwiftDraft runs, by what `path` is: a `.gguf` file (a target, quantized weights), a Hugging Face
/// directory with `config.json` (fp32 weights on `device`), or a SwiftDraft checkpoint (`.h5`) or run directory (a
/// draft, through its `checkpoints/latest`).
public func loadModel(_ path: String, device: any Device) throws -> LoadedModel {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw InputError("--model \(path): no such file or directory")
    }
    let url = URL(fileURLWithPath: path)
    if isDirectory.boolValue {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) {
            return try ModelSources.huggingFace(directory: path, device: device)
        }
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("checkpoints").path) {
            return try ModelSources.checkpoint(path: path, device: device)
        }
    } else {
        switch url.pathExtension.lowercased() {
        case "gguf": return try ModelSources.gguf(path: path, device: device)
        case "h5": return try ModelSources.checkpoint(path: path, device: device)
        default: break
        }
    }
    throw InputError("--model \(path): expected a .gguf file, a Hugging Face directory with config.json, a SwiftDraft checkpoint (.h5) or a run directory with checkpoints/")
}

/// The loaders behind `loadModel`, one per kind of model; each kind's loader lives with its format (GGUF and Hugging
/// Face: the model loaders; checkpoints: the checkpoint codec).
enum ModelSources {
    static func gguf(path: String, device: any Device) throws -> LoadedModel {
        try loadGGUFModel(path: path, device: device)
    }

    static func huggingFace(directory: String, device: any Device) throws -> LoadedModel {
        try loadHFModel(directory: directory, device: device)
    }

    /// A draft: its weights stay in the checkpoint model's flat buffer (views, no copy), its tokenizer is the one
    /// its training config named, which must still be the tokenizer it was trained with.
    static func checkpoint(path: String, device: any Device) throws -> LoadedModel {
        let checkpoint = try loadModelCheckpoint(path: path, device: device)
        let tokenizer = try loadTokenizer(checkpoint.tokenizer)
        guard tokenizer.fingerprint == checkpoint.tokenizerFingerprint else {
            throw InputError("--model \(checkpoint.url.path): its tokenizer \(checkpoint.tokenizer) now has fingerprint \(tokenizer.fingerprint.prefix(12)), not the \(checkpoint.tokenizerFingerprint.prefix(12)) the draft was trained with")
        }
        let config = DecoderConfig(model: checkpoint.config, bosTokenID: tokenizer.bosTokenID,
                                   eosTokenIDs: [tokenizer.eosTokenID])
        let parameters = checkpoint.config.parameterCount
        return LoadedModel(config: config, weights: DecoderWeights(llama: checkpoint.model), tokenizer: tokenizer,
                           chatTemplate: nil, source: "\(checkpoint.url.path) (checkpoint step \(checkpoint.step))",
                           parameterCount: parameters, weightBytes: 4 * parameters)
    }
}
