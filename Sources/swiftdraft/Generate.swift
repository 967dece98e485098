import ArgumentParser
import DraftDevice
import DraftErrors
import DraftInference
import Foundation

/// `swiftdraft generate`: sample from any model SwiftDraft runs, one prompt or a prompt file, batched.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a model (a .gguf target, a Hugging Face directory, a checkpoint or run directory).",
        discussion: "Temperature 0 (the default) is greedy. Raw prompts get BOS when the model adds BOS; --chat (or a prompt file's \"messages\") renders the model's chat template. Generation stops at an end-of-sequence token (not printed) or after --max-new-tokens.")

    @OptionGroup var model: ModelOptions
    @Option(help: "One prompt.") var prompt: String?
    @Option(help: "A JSONL prompt file: {\"id\",\"set\",\"prompt\"} or {\"id\",\"set\",\"messages\":[...]} per line.")
    var prompts: String?
    @Flag(help: "Render --prompt (or raw prompt-file prompts) as a user turn through the model's chat template.")
    var chat = false
    @Option(help: "New tokens per prompt at most.") var maxNewTokens = 128
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Keep the smallest set of tokens with this much probability (1: off).") var topP: Float = 1
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Sampling seed (each prompt draws from its own stream derived from it).") var seed: UInt64 = 0
    @Option(help: "Sequences decoded at once (continuous batching).") var batch = 1
    @Flag(help: "One JSON object per prompt: id, prompt_tokens, output_ids, text, prefill_s, decode_s, decode_tokens_per_s, finish_reason.")
    var json = false

    func run() throws {
        do {
            try generate()
        } catch {
            exitOnError(error)
        }
    }

    private func generate() throws {
        let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
        try sampling.validate()
        guard maxNewTokens >= 0 else { throw InputError("--max-new-tokens: expected an integer >= 0, got \(maxNewTokens)") }
        guard batch >= 1 else { throw InputError("--batch: expected an integer >= 1, got \(batch)") }
        let entries: [PromptEntry]
        switch (prompt, prompts) {
        case (let text?, nil): entries = [PromptEntry(id: "1", set: nil, content: .text(text))]
        case (nil, let path?): entries = try readPromptFile(path)
        default: throw InputError("--prompt and --prompts: expected exactly one of them")
        }
        let compute = try makeInferenceDevice(model.device.device)
        let loaded = try loadModel(model.model, device: compute)
        let promptTokens = try entries.map { try loaded.promptTokens($0, chat: chat) }
        let contextLength = loaded.config.contextLength
        for (entry, tokens) in zip(entries, promptTokens) where tokens.count > contextLength {
            throw InputError("prompt '\(entry.id)' has \(tokens.count) tokens, longer than the model's context of \(contextLength)")
        }
        // The cache holds what the longest prompt can reach, not the whole context (8k x 64 slots would not fit).
        let capacity = min(contextLength, (promptTokens.map(\.count).max() ?? 1) + maxNewTokens)
        let engine = try DecoderEngine(config: loaded.config, weights: loaded.weights, device: compute)
        let generator = try BatchGenerator(engine: engine, batchSize: min(batch, entries.count), capacity: capacity)
        let settings = GenerationSettings(sampling: sampling, maxNewTokens: maxNewTokens,
                                          stopTokens: Set(loaded.config.eosTokenIDs))
        var results = [GeneratedSequence?](repeating: nil, count: entries.count)
        try generator.generate(prompts: promptTokens, settings: settings) { results[$0.index] = $0 }
        for (entry, result) in zip(entries, results) {
            guard let result else { continue }
            let text = loaded.tokenizer.decode(result.outputIDs)
            if json {
                let object: [String: Any] = [
                    "id": entry.id, "prompt_tokens": result.promptTokens,
                    "output_ids": result.outputIDs.map(Int.init), "text": text,
                    "prefill_s": result.prefillSeconds, "decode_s": result.decodeSeconds,
                    "decode_tokens_per_s": result.decodeSeconds > 0 ? Double(result.decodeSteps) / result.decodeSeconds : 0,
                    "finish_reason": result.finishReason.rawValue,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            } else {
                if entries.count > 1 { print("[\(entry.id)]") }
                print(text)
            }
        }
    }
}

/// The compute device of an inference command (`--device`, the CPU by default). Quantized GGUF weights run on the
/// CPU only; the HPU module comes from `HABANA_VISIBLE_MODULES` as for training.
func makeInferenceDevice(_ kind: DeviceKind?) throws -> any Device {
    switch kind ?? .cpu {
    case .cpu: return CPUDevice(quantizedActivations: try .fromEnvironment())
    case .hpu: return try HPUDevice()
    }
}
