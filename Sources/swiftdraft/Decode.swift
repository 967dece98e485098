import ArgumentParser
import DraftData
import DraftTokenizer
import Foundation

/// `swiftdraft decode`: the text of token ids, the inverse of `encode`.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of space-separated token ids.",
        discussion: "The text is written exactly, with no newline added, so 'encode' then 'decode' gives back the input byte for byte. Special tokens are written as their text.")

    @Option(help: "'bytes', a Hugging Face tokenizer.json, or a .gguf holding a tokenizer.") var tokenizer: String
    @Option(help: "Token ids separated by spaces or commas, e.g. \"1 2 3\".") var ids: String

    func run() throws {
        do {
            let tokenizer = try loadTokenizer(tokenizer)
            var parsed: [Int32] = []
            for field in ids.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" || $0 == "\n" }) {
                // An id the vocabulary lacks would be dropped silently by decode; say so instead.
                guard let id = Int32(field), id >= 0, Int(id) < tokenizer.vocabSize else {
                    throw DataError("--ids: '\(field)' is not a token id (expected integers in 0..<\(tokenizer.vocabSize) for \(self.tokenizer))")
                }
                parsed.append(id)
            }
            FileHandle.standardOutput.write(Data(tokenizer.decode(parsed).utf8))
        } catch {
            exitOnError(error)
        }
    }
}
