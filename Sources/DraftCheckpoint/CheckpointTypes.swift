// The vocabulary shared by the writer, the reader and the store: groups, attributes, errors, format constants.
import DraftErrors
import Foundation

/// Constants of the checkpoint file format (see DESIGN.md, "Files").
public enum CheckpointFormat {
    /// Value of the root attribute `format`; a file without it is refused on open.
    public static let name = "swiftdraft-checkpoint"
    /// Value the writer stores in the root attribute `format_version`. Bump it when the layout changes: groups,
    /// checksum attribute, datatypes, or what `CheckpointCodec` maps onto names. A reader refuses files of a newer
    /// version (their meaning is unknown to it) and reads every version from `oldestReadableVersion` on.
    ///
    /// History: 1, the trainer's layout of DESIGN.md; 2 adds the root attributes `model_config` (JSON of
    /// `ModelConfig`) and `tokenizer` (the tokenizer spec), so a model loads without the trainer's config parser.
    public static let version: Int64 = 2
    /// The oldest `format_version` this build reads (version 1 files get their model shape from `config_yaml`).
    public static let oldestReadableVersion: Int64 = 1
    /// Name of the per-dataset attribute holding the checksum of its bytes (see `CheckpointChecksum`).
    public static let checksumAttribute = "checksum_xxh64"
}

/// The four top-level groups of a checkpoint: `/model`, `/optimizer`, `/data`, `/rng`.
public enum CheckpointGroup: String, CaseIterable, Sendable {
    /// Float32 parameters, one dataset per tensor under its Hugging Face Llama name.
    case model
    /// Float32 optimizer state (AdamW moments per tensor) and group attributes such as the optimizer step.
    case optimizer
    /// The data loader's global cursor (int64 arrays and attributes).
    case data
    /// Random-number generator state (int64 arrays and attributes).
    case rng

    /// The group's absolute path in the file, e.g. `/model`.
    public var path: String { "/" + rawValue }
}

/// A scalar or 1-D attribute value. Strings are stored as variable-length UTF-8 (h5py reads them as `str`),
/// integers as little-endian int64, doubles as little-endian float64.
public enum CheckpointAttribute: Equatable, Sendable {
    case string(String)
    case int(Int64)
    case double(Double)
    case ints([Int64])
    case doubles([Double])
}

/// The element type of a dataset in a checkpoint.
public enum CheckpointElementType: String, Sendable {
    /// Tensors (`/model`, `/optimizer`).
    case float32
    /// Integer state (`/data`, `/rng`).
    case int64

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: return 4
        case .int64: return 8
        }
    }
}

/// A dataset found in a checkpoint: where it is, its shape and the checksum stored with it.
public struct CheckpointTensorInfo: Equatable, Sendable {
    /// The top-level group holding it.
    public let group: CheckpointGroup
    /// The dataset's name inside the group, e.g. `model.embed_tokens.weight`.
    public let name: String
    /// Dimensions, outermost first; empty for a scalar.
    public let shape: [Int]
    /// Float32 for tensors, int64 for integer arrays.
    public let elementType: CheckpointElementType
    /// The stored checksum, or nil when the attribute is missing (such a file never verifies).
    public let checksum: UInt64?

    /// Number of elements (product of the shape).
    public var count: Int { shape.reduce(1, *) }
    /// Size of the data in bytes.
    public var byteCount: Int { count * elementType.size }
    /// The absolute path in the file, e.g. `/model/model.embed_tokens.weight`.
    public var path: String { group.path + "/" + name }
}

/// A checkpoint that could not be written, opened or verified. Its description is one line naming the file and
/// what was expected; the CLI prints it and exits 2.
public struct CheckpointError: BadInputError, Sendable {
    /// The file (or directory) concerned.
    public let path: String
    /// What was wrong, phrased as what was expected.
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "checkpoint \(path): \(reason)" }
}

extension CheckpointError: LocalizedError {
    public var errorDescription: String? { description }
}
