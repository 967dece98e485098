import ArgumentParser
import DraftData
import DraftTokenizer
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text files or JSONL records into token shards (documents separated by EOS).")

    @Option(help: "'bytes', a Hugging Face tokenizer.json, or a .gguf holding a tokenizer.") var tokenizer: String
    @Option(parsing: .upToNextOption, help: "Files or directories (walked recursively).") var input: [String]
    @Option(help: "Output directory (shards and manifest.json).") var output: String
    @Option(help: "text (a file is a document) or jsonl (a record is a document).") var format = "text"
    @Option(help: "The JSONL field holding the text.") var field = "text"
    @Option(name: .customLong("val-fraction"), help: "Fraction of documents held out for validation.")
    var valFraction = 0.0

    func validate() throws {
        if input.isEmpty { throw ValidationError("--input: expected at least one file or directory") }
        if CorpusTokenizer.Format(rawValue: format) == nil { throw ValidationError("--format: expected text or jsonl, got '\(format)'") }
        if !(0..<1).contains(valFraction) { throw ValidationError("--val-fraction: expected a fraction in [0, 1)") }
    }

    func run() throws {
        do {
            var corpus = CorpusTokenizer(tokenizer: try loadTokenizer(tokenizer), tokenizerSpec: tokenizer)
            corpus.format = CorpusTokenizer.Format(rawValue: format)!
            corpus.field = field
            corpus.validationFraction = valFraction
            let summary = try corpus.run(inputs: input, output: output) { line in
                FileHandle.standardError.write(Data((line + "\r").utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            print(String(format: "%@: %d documents, %@ train + %@ validation tokens from %.1f MB in %.1fs (%.2f MB/s)%@",
                         output, summary.documents, summary.trainTokens.formatted(), summary.validationTokens.formatted(),
                         Double(summary.inputBytes) / 1e6, summary.seconds, summary.megabytesPerSecond,
                         summary.skippedFiles.isEmpty ? "" : "; skipped \(summary.skippedFiles.count) non-text files"))
        } catch {
            exitOnError(error)
        }
    }
}
