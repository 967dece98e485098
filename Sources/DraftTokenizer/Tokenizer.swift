import DraftErrors
import Foundation

/// Text to token ids and back, exactly as the target model's own tokenizer does it.
///
/// `encode` adds no BOS/EOS (like Hugging Face `tokenizers` with `add_special_tokens=False`); document boundaries are
/// marked by the caller with `eosTokenID`.
public protocol Tokenizer: Sendable {
    /// Number of ids, added and special tokens included: every id `encode` can return is below it.
    var vocabSize: Int { get }
    /// The end-of-sequence id, used to separate documents in token shards.
    var eosTokenID: Int32 { get }
    /// The beginning-of-sequence id, when the vocabulary has one.
    var bosTokenID: Int32? { get }
    /// A stable identity for the tokenizer: hex SHA-256 of its content (``TokenizerFingerprint``: vocabulary, merges,
    /// special ids, pipeline; not the file's bytes), or a fixed name for built-in tokenizers. Shards and checkpoints
    /// record it so data and models from different tokenizers never mix.
    var fingerprint: String { get }

    /// Whether a fingerprint recorded in a shard or checkpoint stands for this tokenizer: its own, or (file-based
    /// tokenizers) the whole-file SHA-256 that SwiftDraft recorded before content fingerprints.
    func recognizes(fingerprint: String) -> Bool

    func encode(_ text: String) -> [Int32]
    func decode(_ ids: [Int32]) -> String
}

extension Tokenizer {
    public func recognizes(fingerprint recorded: String) -> Bool { recorded == fingerprint }
}

/// A tokenizer file that cannot be used: the message names the file and what was expected. Bad input: the command
/// line exits 2 on it.
public struct TokenizerError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
