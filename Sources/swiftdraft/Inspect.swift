import ArgumentParser
import DraftCheckpoint
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A checkpoint's metadata, tensor table (name, shape, checksum) and a verdict; exit 2 when it is damaged.")

    @Argument(help: "A checkpoint file (.h5).") var checkpoint: String

    func run() throws {
        let (report, ok) = inspectCheckpoint(URL(fileURLWithPath: checkpoint))
        print(report)
        if !ok { throw ExitCode(2) }
    }
}
