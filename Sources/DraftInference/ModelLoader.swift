import DraftDevice
import DraftErrors
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
/// Face: the model loaders; checkpoints: the checkpoint codec). Until a loader is merged its kind is refused here.
enum ModelSources {
    static func gguf(path: String, device: any Device) throws -> LoadedModel {
        throw InputError("--model \(path): GGUF models are not yet supported by this build")
    }

    static func huggingFace(directory: String, device: any Device) throws -> LoadedModel {
        throw InputError("--model \(directory): Hugging Face model directories are not yet supported by this build")
    }

    static func checkpoint(path: String, device: any Device) throws -> LoadedModel {
        throw InputError("--model \(path): SwiftDraft checkpoints are not yet supported by this build")
    }
}
