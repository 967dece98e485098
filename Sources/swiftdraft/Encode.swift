import ArgumentParser
import DraftData
import DraftTokenizer
import Foundation

/// `swiftdraft encode`: the ids a tokenizer gives a text, for checking it against its reference implementation.
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text, space-separated on one line (no BOS/EOS added).",
        discussion: "Matches Hugging Face tokenizers' encode(text, add_special_tokens=False). Without --text or --file the text is read from standard input.")

    @Option(help: "'bytes', a Hugging Face tokenizer.json, or a .gguf holding a tokenizer.") var tokenizer: String
    @Option(help: "The text to encode.") var text: String?
    @Option(help: "A UTF-8 file whose whole content is encoded.") var file: String?

    func run() throws {
        do {
            let input = try readInput()
            let ids = try loadTokenizer(tokenizer).encode(input)
            print(ids.map(String.init).joined(separator: " "))
        } catch {
            exitOnError(error)
        }
    }

    private func readInput() throws -> String {
        switch (text, file) {
        case (_?, _?):
            throw DataError("--text and --file: expected one of them, not both")
        case (let text?, nil):
            return text
        case (nil, let file?):
            guard let data = FileManager.default.contents(atPath: file) else {
                throw DataError("\(file): cannot read (expected a UTF-8 text file)")
            }
            guard let string = String(data: data, encoding: .utf8) else { throw DataError("\(file): not valid UTF-8 text") }
            return string
        case (nil, nil):
            let data = FileHandle.standardInput.readDataToEndOfFile()
            guard let string = String(data: data, encoding: .utf8) else { throw DataError("standard input: not valid UTF-8 text") }
            return string
        }
    }
}
