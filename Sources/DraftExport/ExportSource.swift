import DraftCheckpoint
import DraftDevice
import DraftErrors
import DraftModel
import DraftTokenizer
import Foundation

/// What an export is made from: a trained draft (its checkpoint) and its tokenizer, which is the target's.
public struct ExportSource {
    public let checkpoint: ModelCheckpoint
    public let tokenizer: any Tokenizer
    /// The tokenizer's file, resolved as the training config named it (relative paths against the working directory
    /// and, failing that, the run directory above the checkpoint).
    public let tokenizerPath: String?

    /// Loads `checkpointPath` (a `.h5` file or a run directory) and its tokenizer, checking that the tokenizer is the
    /// one the draft was trained with.
    public init(checkpointPath: String) throws {
        checkpoint = try loadModelCheckpoint(path: checkpointPath, device: CPUDevice())
        try checkpoint.model.zeroHeadRowsOutsideSubset()
        let spec = checkpoint.tokenizer
        var path: String? = nil
        if spec != "bytes" {
            let runDirectory = checkpoint.url.deletingLastPathComponent().deletingLastPathComponent()
            let candidates = [spec, runDirectory.appendingPathComponent(spec).path]
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw InputError("\(checkpoint.url.path): its tokenizer '\(spec)' is not found (looked in the working directory and \(runDirectory.path))")
            }
            path = found
        }
        tokenizerPath = path
        tokenizer = try loadTokenizer(path ?? spec)
        guard tokenizer.fingerprint == checkpoint.tokenizerFingerprint else {
            throw InputError("\(tokenizerPath ?? spec): tokenizer fingerprint \(tokenizer.fingerprint.prefix(16))... differs from the checkpoint's \(checkpoint.tokenizerFingerprint.prefix(16))... (\(checkpoint.url.path))")
        }
    }
}
