import Foundation
import DraftTokenizer

/// One named corpus of a run (`data.sources.<name>`): its training shards and held-out validation shards.
///
/// A source path is a directory written by `swiftdraft tokenize` (with `manifest.json`), a directory written by
/// `swiftdraft distill` (its shards carry loss masks and, with `--top-k-logits`, the target's top-K), a directory of
/// `.bin` shards (files named `val*` or `*_val_*` / `*_val.bin` are the validation split, as in llm.c), or a single
/// shard file.
public final class DataSource {
    public let name: String
    public let path: String
    public let train: [TokenShard]
    public let validation: [TokenShard]
    /// Loss masks aligned with `train` / `validation`; nil when every token is a target (raw text).
    public let trainMasks: [LossMaskShard]?
    public let validationMasks: [LossMaskShard]?
    /// The target's top-K aligned with `train`; nil without top-K.
    public let teacher: [TeacherTopKShard]?
    public let tokenizerFingerprint: String?
    public var trainTokens: Int { train.reduce(0) { $0 + $1.tokenCount } }

    public init(name: String, path: String) throws {
        self.name = name
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError("data.sources.\(name).path: '\(path)' does not exist (expected a directory from 'swiftdraft tokenize' or a token shard)")
        }
        var trainFiles: [String] = [], validationFiles: [String] = []
        var distill: DistillShardManifest?
        if !isDirectory.boolValue {
            trainFiles = [path]
        } else if let manifest = try DistillShardManifest.loadIfPresent(directory: path, source: name) {
            distill = manifest
            trainFiles = manifest.train.files.map { (path as NSString).appendingPathComponent($0) }
            validationFiles = manifest.validation.files.map { (path as NSString).appendingPathComponent($0) }
        } else if let manifest = try ShardManifest.loadIfPresent(directory: path) {
            trainFiles = manifest.train.files.map { (path as NSString).appendingPathComponent($0) }
            validationFiles = manifest.validation.files.map { (path as NSString).appendingPathComponent($0) }
        } else {
            let names = (try? fm.contentsOfDirectory(atPath: path))?.filter { $0.hasSuffix(".bin") }.sorted() ?? []
            for file in names {
                let full = (path as NSString).appendingPathComponent(file)
                if Self.isValidationShardName(file) { validationFiles.append(full) } else { trainFiles.append(full) }
            }
        }
        guard !trainFiles.isEmpty else {
            throw DataError("data.sources.\(name).path: '\(path)' holds no training shards (expected manifest.json or *.bin files)")
        }
        train = try trainFiles.map { try TokenShard(url: URL(fileURLWithPath: $0)) }
        validation = try validationFiles.map { try TokenShard(url: URL(fileURLWithPath: $0)) }
        if let distill {
            func masks(_ shards: [TokenShard]) throws -> [LossMaskShard] {
                try shards.map { shard in
                    let mask = try LossMaskShard(url: LossMaskShard.url(forShard: shard.url))
                    guard mask.tokenCount == shard.tokenCount else {
                        throw DataError("\(mask.url.path): \(mask.tokenCount) mask entries for the \(shard.tokenCount) tokens of \(shard.url.lastPathComponent)")
                    }
                    return mask
                }
            }
            trainMasks = try masks(train)
            validationMasks = try masks(validation)
            if let k = distill.topK {
                teacher = try train.map { shard in
                    let topK = try TeacherTopKShard(url: TeacherTopKShard.url(forShard: shard.url))
                    guard topK.tokenCount == shard.tokenCount, topK.k == k else {
                        throw DataError("\(topK.url.path): K \(topK.k) over \(topK.tokenCount) positions, expected K \(k) (manifest top_k) over the \(shard.tokenCount) tokens of \(shard.url.lastPathComponent)")
                    }
                    return topK
                }
            } else {
                teacher = nil
            }
        } else {
            trainMasks = nil
            validationMasks = nil
            teacher = nil
        }
        let fingerprints = Set((train + validation).compactMap(\.tokenizerFingerprint))
        guard fingerprints.count <= 1 else {
            throw DataError("data.sources.\(name).path: '\(path)' mixes shards of different tokenizers: \(fingerprints.sorted())")
        }
        tokenizerFingerprint = fingerprints.first
    }

    /// llm.c names its splits `<corpus>_val_<n>.bin` / `<corpus>_train_<n>.bin` (and `tiny_shakespeare_val.bin`);
    /// `tokenize` writes `val-<n>.bin`. Both mark held-out data, which must never be trained on.
    static func isValidationShardName(_ file: String) -> Bool {
        let stem = file.lowercased()
        return stem.hasPrefix("val") || stem.contains("_val_") || stem.contains("_val.") || stem.contains("-val-")
    }

    /// Checks the shards against the run's tokenizer and model before any training starts. Shards written before
    /// content fingerprints carry the tokenizer file's SHA-256; `Tokenizer.recognizes` accepts those too.
    public func validate(tokenizer: any Tokenizer, modelVocab: Int, seqLen: Int) throws {
        try validate(tokenizerFingerprint: tokenizer.fingerprint, recognizes: { tokenizer.recognizes(fingerprint: $0) },
                     modelVocab: modelVocab, seqLen: seqLen)
    }

    /// As `validate(tokenizer:...)` for a fingerprint alone (exact match).
    public func validate(tokenizerFingerprint expected: String, modelVocab: Int, seqLen: Int) throws {
        try validate(tokenizerFingerprint: expected, recognizes: { $0 == expected }, modelVocab: modelVocab, seqLen: seqLen)
    }

    private func validate(tokenizerFingerprint expected: String, recognizes: (String) -> Bool, modelVocab: Int,
                          seqLen: Int) throws {
        if let fingerprint = tokenizerFingerprint, !recognizes(fingerprint) {
            throw DataError("\(train[0].url.path): made with tokenizer \(fingerprint), but the config's tokenizer is \(expected) (re-run 'swiftdraft tokenize' with the run's tokenizer)")
        }
        for shard in train + validation {
            if let vocab = shard.vocabSize {
                if vocab > modelVocab {
                    throw DataError("\(shard.url.path): vocabulary of \(vocab) ids exceeds model.vocab_size \(modelVocab)")
                }
            } else {
                let maximum = shard.maxTokenID()
                if maximum >= modelVocab {
                    throw DataError("\(shard.url.path): token id \(maximum) is not below model.vocab_size \(modelVocab)")
                }
            }
        }
        guard train.contains(where: { $0.tokenCount > seqLen }) else {
            throw DataError("data.sources.\(name).path: '\(path)' has no shard longer than data.seq_len \(seqLen) tokens (\(trainTokens) tokens in all)")
        }
    }
}

/// What the loader needs of a `distill` output directory's `manifest.json` (format `swiftdraft-distill`; the rest of
/// the manifest describes the run). A run still in progress has `complete: false` and no shards yet.
public struct DistillShardManifest: Codable {
    public static let format = "swiftdraft-distill"
    public var format: String
    public var complete: Bool
    public var train: ShardManifest.Split
    public var validation: ShardManifest.Split
    public var topK: Int?

    enum CodingKeys: String, CodingKey {
        case format, complete, train, validation
        case topK = "top_k"
    }

    /// The manifest of `directory` when it is a distill directory; nil when it is something else (or has none).
    public static func loadIfPresent(directory: String, source: String) throws -> DistillShardManifest? {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        guard let data = FileManager.default.contents(atPath: url.path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              object["format"] as? String == format else { return nil }
        let manifest: DistillShardManifest
        do {
            manifest = try JSONDecoder().decode(DistillShardManifest.self, from: data)
        } catch {
            throw DataError("\(url.path): malformed distill manifest (\(error))")
        }
        guard manifest.complete else {
            throw DataError("data.sources.\(source).path: '\(directory)' is a distill run that has not finished (re-run the same 'swiftdraft distill' command to complete it)")
        }
        return manifest
    }
}

/// `manifest.json` of a tokenized directory.
public struct ShardManifest: Codable {
    public struct Split: Codable {
        public var files: [String]
        public var tokens: Int
        public var documents: Int

        public init(files: [String], tokens: Int, documents: Int) {
            self.files = files
            self.tokens = tokens
            self.documents = documents
        }
    }

    public var format = "swiftdraft-shards"
    public var version = 1
    public var tokenizer: String
    public var tokenizerSHA256: String
    public var vocabSize: Int
    public var eosID: Int
    public var train: Split
    public var validation: Split
    public var inputs: [String]
    public var skippedFiles: [String]

    enum CodingKeys: String, CodingKey {
        case format, version, tokenizer, train, validation, inputs
        case tokenizerSHA256 = "tokenizer_sha256", vocabSize = "vocab_size", eosID = "eos_id"
        case skippedFiles = "skipped_files"
    }

    public static func loadIfPresent(directory: String) throws -> ShardManifest? {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            return try JSONDecoder().decode(ShardManifest.self, from: Data(contentsOf: url))
        } catch {
            throw DataError("\(url.path): malformed shard manifest (\(error))")
        }
    }
}
