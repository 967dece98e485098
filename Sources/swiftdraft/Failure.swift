import ArgumentParser
import DraftDistributed
import DraftErrors
import Foundation

/// The one place a command ends on an error: exit code 2 for bad input (any error adopting `BadInputError` that
/// says so: config, data, tokenizer, checkpoint, plugin, device memory), 1 for anything else; under MPI, through
/// `MPI_Abort` so no other rank is left waiting in a collective.
func exitOnError(_ error: Error, communicator: (any Communicator)? = nil) -> Never {
    let code = exitCode(for: error)
    let message = "\(error)"
    if let communicator, communicator.size > 1 {
        communicator.abort(exitCode: code, message: "rank \(communicator.rank): \(message)")
    }
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(code)
}

/// Ends the process on an error from parsing the command line: help and version requests print and exit 0 as
/// usual; everything else (a missing option, an unknown flag, a bad value, a failed `validate()`) is bad input:
/// exit 2 with one line naming the option, not the usage text.
func exitOnParseError<Command: ParsableCommand>(_ error: Error, command: Command.Type) -> Never {
    if error is BadInputError { exitOnError(error) }
    let code = command.exitCode(for: error)
    if code == .success { command.exit(withError: error) }
    let lines = command.message(for: error).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
    let message = lines.filter { !$0.isEmpty }.joined(separator: " ")
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(code == .validationFailure ? 2 : code.rawValue)
}
