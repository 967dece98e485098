import ArgumentParser
import DraftErrors
import DraftInference
import Foundation

/// `swiftdraft score`: perplexity of a text, counted as `llama-perplexity` counts it.
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity (mean NLL per token) of a text, as llama-perplexity computes it.",
        discussion: "The text is tokenized once (BOS first when the model adds BOS) and cut into whole chunks of --context tokens, the remainder dropped; each chunk runs alone, its first token replaced by BOS when the model adds BOS, and only the second half of each chunk is scored: context - context/2 - 1 predictions per chunk. At least two chunks are needed.")

    @OptionGroup var model: ModelOptions
    @Option(help: "A UTF-8 text file.") var file: String
    @Option(help: "Tokens per chunk (llama-perplexity's -c).") var context = 512
    @Flag(help: "One JSON object: tokens (scored), nll (mean, nats), ppl, text_tokens, chunks, context.") var json = false

    func run() throws {
        do {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw InputError("--file \(file): cannot read it as UTF-8 text")
            }
            let compute = try makeInferenceDevice(model.device.device)
            let loaded = try loadModel(model.model, device: compute)
            var tokens = loaded.tokenizer.encode(text)
            let bos = loaded.config.addsBOS ? loaded.config.bosTokenID : nil
            if let bos { tokens.insert(bos, at: 0) }
            let engine = try DecoderEngine(config: loaded.config, weights: loaded.weights, device: compute,
                                           maxRows: min(max(context, 1), 512))
            let result = try perplexity(engine: engine, tokens: tokens, context: context, bos: bos)
            if json {
                print(String(format: "{\"tokens\":%d,\"nll\":%.6f,\"ppl\":%.4f,\"text_tokens\":%d,\"chunks\":%d,\"context\":%d}",
                             result.scoredTokens, result.meanNLL, result.perplexity, result.textTokens, result.chunks,
                             result.context))
            } else {
                print("\(file): \(result.chunks) chunks of \(result.context) tokens, \(result.scoredTokens) tokens scored: "
                      + String(format: "nll %.4f, ppl %.4f", result.meanNLL, result.perplexity))
            }
        } catch {
            exitOnError(error)
        }
    }
}
