// Loading a trained draft for inference or export in one call, from a checkpoint file or a run directory, without
// the trainer or its config parser.
import DraftDevice
import DraftModel
import Foundation

/// A model loaded from a SwiftDraft checkpoint, with what is needed to use it: its shape, the tokenizer it was trained
/// with, and where in training it was saved.
public struct ModelCheckpoint {
    /// The model with every parameter set from `/model`.
    public let model: LlamaModel
    /// The model's shape (also `model.config`).
    public var config: ModelConfig { model.config }
    /// The tokenizer as the training config named it (`bytes`, or a `tokenizer.json` / `.gguf` path as given then).
    public let tokenizer: String
    /// The tokenizer's content fingerprint; a tokenizer loaded from `tokenizer` must match it.
    public let tokenizerFingerprint: String
    /// Global optimizer steps completed when it was saved.
    public let step: Int
    /// The schedule stage of its last step, by name and index.
    public let stage: String
    public let stageIndex: Int
    /// The file read (for a run directory, the one `checkpoints/latest` names).
    public let url: URL
    /// The file's `format_version`.
    public let formatVersion: Int64
}

/// Loads the model of a checkpoint: `path` is a `.h5` checkpoint, a run directory (its `checkpoints/latest`) or a
/// run's `checkpoints/` directory itself. Only `/model` and the root attributes are read (no optimizer moments), every
/// tensor is checked against its checksum and against the shape the checkpoint's model config gives it.
///
/// Errors (`CheckpointError`, bad input): nothing at `path`, not a checkpoint, a newer `format_version`, a missing or
/// extra tensor or a wrong shape (each naming the tensor), a directory without checkpoints, a `latest` naming a file
/// that does not exist. Device allocation failures are `DeviceError`s.
public func loadModelCheckpoint(path: String, device: any Device) throws -> ModelCheckpoint {
    let url = try resolveCheckpointFile(path)
    let reader = try CheckpointReader(url: url)
    let state = try CheckpointCodec.decodeModel(reader)
    let model = try LlamaModel(config: state.modelConfig, device: device)
    try model.setParameters(state.parameters)
    if let ids = state.headIDs { try model.setHeadIDs(ids) }
    return ModelCheckpoint(model: model, tokenizer: state.tokenizer, tokenizerFingerprint: state.tokenizerFingerprint,
                           step: state.step, stage: state.stageName, stageIndex: state.stageIndex, url: url,
                           formatVersion: reader.formatVersion)
}

/// The checkpoint file `path` stands for: itself when it is a file; for a directory, the checkpoint its `latest`
/// names (in `path/checkpoints/` for a run directory, or in `path` for a checkpoints directory), or when there is no
/// `latest` file, its highest step.
public func resolveCheckpointFile(_ path: String) throws -> URL {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CheckpointError(path: path, reason: "expected a checkpoint file or a run directory, found nothing")
    }
    let url = URL(fileURLWithPath: path)
    guard isDirectory.boolValue else { return url }
    let nested = url.appendingPathComponent("checkpoints")
    var nestedIsDirectory: ObjCBool = false
    let directory = FileManager.default.fileExists(atPath: nested.path, isDirectory: &nestedIsDirectory)
        && nestedIsDirectory.boolValue ? nested : url
    let store = CheckpointStore(directory: directory, keepLast: 0)
    if let latest = store.latestName() {
        let file = directory.appendingPathComponent(latest)
        guard !latest.contains("/"), FileManager.default.fileExists(atPath: file.path) else {
            throw CheckpointError(path: directory.appendingPathComponent(CheckpointStore.latestName).path,
                                  reason: "names \(latest), expected a checkpoint file in \(directory.path)")
        }
        return file
    }
    guard let newest = try store.checkpoints().last else {
        throw CheckpointError(path: path, reason: "expected a run directory with checkpoints/\(CheckpointStore.latestName)"
                              + " or step-XXXXXXXX.h5 files, found no checkpoint")
    }
    return newest.url
}
