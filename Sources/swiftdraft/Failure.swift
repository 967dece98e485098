import DraftCheckpoint
import DraftData
import DraftDevice
import DraftDistributed
import DraftErrors
import DraftTokenizer
import DraftTraining
import Foundation

/// The one place a command ends on an error: exit code 2 for bad input (config, data, tokenizer, checkpoint, plugin,
/// device memory), 1 for anything else; under MPI, through `MPI_Abort` so no other rank is left waiting in a
/// collective.
func exitOnError(_ error: Error, communicator: (any Communicator)? = nil) -> Never {
    let code: Int32
    switch error {
    case is ConfigError, is DataError, is TokenizerError, is CheckpointError, is BadInputError:
        code = 2
    case let device as DeviceError:
        code = device.kind == .unsupported || device.kind == .nonFinite ? 1 : 2
    default:
        code = 1
    }
    let message = "\(error)"
    if let communicator, communicator.size > 1 {
        communicator.abort(exitCode: code, message: "rank \(communicator.rank): \(message)")
    }
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(code)
}
