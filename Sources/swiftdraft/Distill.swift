import ArgumentParser
import DraftDistill
import DraftErrors
import DraftInference
import DraftTokenizer
import Foundation

/// `swiftdraft distill`: sequence-level KD data from a target, a model SwiftDraft runs or an OpenAI-compatible URL.
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make knowledge-distillation data: the target's responses to prompts at several temperatures.",
        discussion: "Writes responses.jsonl (one record per prompt and temperature, appended as each completes), token shards with a loss mask (prompt tokens are context, response tokens are trained) and manifest.json. A killed run, restarted with the same arguments, continues where it stopped.")

    @Option(help: "The target: a model file or directory SwiftDraft runs, or the http(s):// URL of an OpenAI-compatible server.")
    var target: String
    @Option(help: "The target's tokenizer (tokenizer.json or .gguf); needed with a URL, checked against a local target.")
    var tokenizer: String?
    @Option(help: "A JSONL prompt file: {\"id\",\"set\",\"prompt\"} or {\"id\",\"set\",\"messages\":[...]} per line.")
    var prompts: String?
    @Option(help: "Let the target write N instructions (Magpie) and answer them.") var magpie: Int?
    @Option(help: "The output directory.") var output: String
    @Option(help: "Comma-separated sampling temperatures; 0 is greedy.") var temperatures = "0.6,0.8,1.0,0"
    @Option(help: "New tokens per response at most.") var maxNewTokens = 256
    @Option(help: "Store the target's top-K log-probabilities at every response token.") var topKLogits: Int?
    @Option(help: "Sequences (or server requests) in flight at once.") var batch = 16
    @Option(help: "Seed of every response's sampler (each prompt and temperature draws from its own stream).")
    var seed: UInt64 = 0
    @Option(help: "Environment variable holding the server's API key (sent only to --target).")
    var apiKeyEnv = "OPENAI_API_KEY"
    @OptionGroup var device: DeviceOptions

    func run() throws {
        do {
            try distill()
        } catch {
            exitOnError(error)
        }
    }

    private func distill() throws {
        let request = DistillRequest(target: target, tokenizer: tokenizer, prompts: prompts, magpie: magpie, output: output,
                                     temperatures: try DistillRequest.parseTemperatures(temperatures),
                                     maxNewTokens: maxNewTokens, topK: topKLogits, batch: batch, seed: seed)
        try request.validate()
        let lower = target.lowercased()
        let model: any DistillTarget
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard let tokenizer else {
                throw InputError("--tokenizer: needed with a URL target (responses are re-tokenized with the target's tokenizer)")
            }
            if topKLogits != nil {
                throw InputError("--top-k-logits: not available with a URL target (the server's tokens cannot be aligned with the re-tokenized response); use a local target")
            }
            let loaded = try loadTokenizer(tokenizer)
            let key = ProcessInfo.processInfo.environment[apiKeyEnv]
            model = try CompletionsTarget(url: target, tokenizer: loaded, tokenizerPath: tokenizer, apiKey: key)
        } else {
            let compute = try makeInferenceDevice(device.device)
            let loaded: LoadedModel
            do {
                loaded = try loadModel(target, device: compute)
            } catch let error as InputError {
                throw InputError(error.message.replacingOccurrences(of: "--model", with: "--target"))
            }
            if let tokenizer {
                let given = try loadTokenizer(tokenizer)
                guard loaded.tokenizer.recognizes(fingerprint: given.fingerprint) else {
                    throw InputError("--tokenizer \(tokenizer): fingerprint \(given.fingerprint.prefix(12)) differs from the target's \(loaded.tokenizer.fingerprint.prefix(12)) (\(target)); expected the target's own tokenizer")
                }
            }
            if let k = topKLogits, k > loaded.config.vocabSize {
                throw InputError("--top-k-logits \(k): larger than the target's vocabulary of \(loaded.config.vocabSize)")
            }
            model = NativeTarget(model: loaded, device: compute)
        }
        try DistillRun(request: request, target: model) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }.run()
    }
}
