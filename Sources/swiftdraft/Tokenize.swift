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
    @Option(help: "text (a file is a document) or jsonl (a record is a document).") var format: CorpusFormat = .text
    @Option(help: "The JSONL field holding the text.") var field = "text"
    @Option(name: .customLong("val-fraction"), help: "Fraction of documents held out for validation.")
    var valFraction = 0.0

    func validate() throws {
        if input.isEmpty { throw ValidationError("--input: expected at least one file or directory") }
        if !(0..<1).contains(valFraction) { throw ValidationError("--val-fraction: expected a fraction in [0, 1), got \(valFraction)") }
    }

    func run() throws {
        var printedProgress = false
        do {
            var corpus = CorpusTokenizer(tokenizer: try loadTokenizer(tokenizer), tokenizerSpec: tokenizer)
            corpus.format = format.corpusFormat
            corpus.field = field
            corpus.validationFraction = valFraction
            // The running progress line rewrites itself with '\r', which only makes sense on a terminal; in a log or a
            // pipe it would glue onto the next line (an error message included).
            let interactive = isatty(STDERR_FILENO) != 0
            let summary = try corpus.run(inputs: input, output: output) { line in
                guard interactive else { return }
                printedProgress = true
                FileHandle.standardError.write(Data((line + "\r").utf8))
            }
            if printedProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            print(String(format: "%@: %d documents, %@ train + %@ validation tokens from %.1f MB in %.1fs (%.2f MB/s, %d threads)%@",
                         output, summary.documents, summary.trainTokens.formatted(), summary.validationTokens.formatted(),
                         Double(summary.inputBytes) / 1e6, summary.seconds, summary.megabytesPerSecond, corpus.threads,
                         summary.skippedFiles.isEmpty ? "" : "; skipped \(summary.skippedFiles.count) non-text files"))
        } catch {
            if printedProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            exitOnError(error)
        }
    }
}

/// `--format text|jsonl`.
enum CorpusFormat: String, CaseIterable, ExpressibleByArgument {
    case text, jsonl

    var corpusFormat: CorpusTokenizer.Format {
        switch self {
        case .text: return .text
        case .jsonl: return .jsonl
        }
    }
}
