import ArgumentParser

@main
struct SwiftDraft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftdraft",
        abstract: "Train small draft models for speculative decoding of a large target model.",
        subcommands: [Train.self, Plan.self, Tokenize.self, Encode.self, Decode.self, Bench.self, Inspect.self, Generate.self, Score.self,
                      Speculate.self, Export.self])
}
