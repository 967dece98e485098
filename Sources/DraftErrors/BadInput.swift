/// An error caused by what the user gave: a file, a flag, a config key, a prompt.
///
/// Every module's input errors adopt this protocol, so the command line maps them to exit code 2 without knowing
/// each module's error types; anything else is a runtime failure (exit 1). The description is the one line the user
/// sees: it names the file, the key or offset, and what was expected.
///
/// A type whose cases are partly bad input and partly runtime failures (a device error: out of memory is the user's
/// config, a kernel writing NaN is not) adopts the protocol and answers `isBadInput` per value.
public protocol BadInputError: Error, CustomStringConvertible {
    /// Whether this value is the user's to fix (exit 2) rather than a runtime failure (exit 1). Defaults to true.
    var isBadInput: Bool { get }
}

extension BadInputError {
    public var isBadInput: Bool { true }
}

/// A bad-input error that is only a message, for modules that need no richer type.
public struct InputError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The process exit code for an error: 2 when it is bad input (adopts `BadInputError` and says so), else 1.
public func exitCode(for error: Error) -> Int32 {
    if let input = error as? BadInputError, input.isBadInput { return 2 }
    return 1
}
