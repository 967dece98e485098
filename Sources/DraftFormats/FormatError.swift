import DraftErrors

/// A file that is not what its format's specification says: truncated, an unknown type, a malformed header.
/// The message names the file, the byte offset or entry, and what was expected.
public struct FormatError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
