/// An error caused by what the user gave: a file, a flag, a config key, a prompt.
///
/// Every module's input errors adopt this protocol, so the command line maps them to exit code 2 without knowing
/// each module's error types; anything else is a runtime failure (exit 1). The description is the one line the user
/// sees: it names the file, the key or offset, and what was expected.
public protocol BadInputError: Error, CustomStringConvertible {}

/// A bad-input error that is only a message, for modules that need no richer type.
public struct InputError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
