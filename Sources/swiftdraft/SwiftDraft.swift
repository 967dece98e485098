import ArgumentParser

@main
struct SwiftDraft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftdraft",
        abstract: "Train small draft models for speculative decoding of a large target model.",
        subcommands: [Train.self, Plan.self, Tokenize.self, Encode.self, Decode.self, Bench.self, Inspect.self, Generate.self,
                      Score.self, BenchGenerate.self, Speculate.self, Export.self, Distill.self])

    /// ArgumentParser's own `main`, but with its usage errors (exit 64 and the usage text) turned into the CLI's
    /// convention for bad input: exit 2 and one line.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exitOnParseError(error, command: SwiftDraft.self)
        }
        do {
            try command.run()
        } catch {
            // What a command throws out of run() is an ExitCode (plan, inspect) or a CleanExit; errors of its work
            // were already reported by exitOnError.
            exit(withError: error)
        }
    }
}
