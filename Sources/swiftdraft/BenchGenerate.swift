import ArgumentParser
import DraftDevice
import DraftErrors
import DraftInference
import DraftModel
import Foundation

/// `swiftdraft bench-generate`: batched generation throughput and batch-1 decode speed, for scripts/bench-generate.sh.
struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-generate",
        abstract: "Measure generation throughput (new tokens/s) at several batch sizes.",
        discussion: "With --model, that model; with --shape, a random-weight fp32 model of a named shape: smollm2 (SmolLM2-135M: 576 wide, 30 layers, 9/3 heads, 49,152 vocabulary, i.e. what transformers runs from the GGUF in fp32) or draft10m (a 9.7M-parameter draft with the same vocabulary). Every sequence samples exactly --new-tokens tokens (no stop token) after a prompt of --prompt-tokens; tokens/s counts new tokens over the whole generate call, prefill included, as timing transformers' generate does.")

    @Option(help: "A model file or directory.") var model: String?
    @Option(help: "smollm2 or draft10m (random fp32 weights).") var shape: String?
    @Option(help: "Comma-separated batch sizes.") var batches = "1,16,64"
    @Option(help: "Prompt length in tokens.") var promptTokens = 16
    @Option(help: "New tokens per sequence.") var newTokens = 32
    @Option(help: "Sampling temperature (0 is greedy).") var temperature: Float = 1
    @OptionGroup var deviceOptions: DeviceOptions
    @Flag(help: "One JSON object per batch size.") var json = false
    @Flag(help: "Time every kernel (each waits for the device) and print the table after each batch size.")
    var profile = false

    func run() throws {
        do {
            let base = try makeInferenceDevice(deviceOptions.device)
            let profiler = profile ? InstrumentedDevice(wrapping: base, checkFinite: false) : nil
            let compute: any Device = profiler ?? base
            let (config, weights, name) = try loadBenchModel(device: compute)
            let sizes = try batches.split(separator: ",").map { field -> Int in
                guard let n = Int(field.trimmingCharacters(in: .whitespaces)), n > 0 else {
                    throw InputError("--batches: expected positive integers separated by commas, got '\(field)'")
                }
                return n
            }
            let engine = try DecoderEngine(config: config, weights: weights, device: compute)
            var rng = SplitMix64(seed: 1)
            for batch in sizes {
                let prompts = (0..<batch).map { _ in
                    (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
                }
                let generator = try BatchGenerator(engine: engine, batchSize: batch, capacity: promptTokens + newTokens)
                let settings = GenerationSettings(sampling: SamplingParameters(temperature: temperature, seed: 3),
                                                  maxNewTokens: newTokens, stopTokens: [])
                let start = DispatchTime.now().uptimeNanoseconds
                var produced = 0, decodeSeconds = 0.0, prefillSeconds = 0.0
                try generator.generate(prompts: prompts, settings: settings) { result in
                    produced += result.outputIDs.count
                    decodeSeconds = max(decodeSeconds, result.decodeSeconds)
                    prefillSeconds = max(prefillSeconds, result.prefillSeconds)
                }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                let throughput = Double(produced) / seconds
                // Each decode step draws one token per sequence: step time is decode time over steps.
                let stepSeconds = decodeSeconds / Double(max(newTokens - 1, 1))
                if json {
                    print(String(format: "{\"model\":\"%@\",\"batch\":%d,\"new_tokens\":%d,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"prefill_s\":%.4f,\"decode_step_s\":%.5f}",
                                 name as NSString, batch, produced, seconds, throughput, prefillSeconds, stepSeconds))
                } else {
                    if let profiler {
                        print(profiler.report())
                        profiler.resetTimings()
                    }
                    print("\(name) batch \(batch): \(produced) new tokens in " + String(format: "%.2f s: %.1f tokens/s (prefill %.3f s, decode step %.2f ms)", seconds, throughput, prefillSeconds, 1000 * stepSeconds))
                }
            }
        } catch {
            exitOnError(error)
        }
    }

    private func loadBenchModel(device: any Device) throws -> (DecoderConfig, DecoderWeights, String) {
        switch (model, shape) {
        case (let path?, nil):
            let loaded = try loadModel(path, device: device)
            return (loaded.config, loaded.weights, loaded.source)
        case (nil, let shape?):
            let shapes = [
                "smollm2": ModelConfig(vocabSize: 49_152, dim: 576, layers: 30, heads: 9, kvHeads: 3, ffnDim: 1536,
                                       maxSeqLen: 2048, ropeTheta: 100_000),
                "draft10m": ModelConfig(vocabSize: 49_152, dim: 160, layers: 6, heads: 5, kvHeads: 5, ffnDim: 432,
                                        maxSeqLen: 2048, ropeTheta: 100_000),
            ]
            guard let modelConfig = shapes[shape] else {
                throw InputError("--shape: expected smollm2 or draft10m, got '\(shape)'")
            }
            let llama = try LlamaModel(config: modelConfig, device: device)
            try llama.initializeParameters(seed: 1)
            let config = DecoderConfig(model: modelConfig, bosTokenID: nil, eosTokenIDs: [])
            return (config, DecoderWeights(llama: llama),
                    "\(shape) (random fp32, \(modelConfig.parameterCount) parameters)")
        default:
            throw InputError("--model and --shape: expected exactly one of them")
        }
    }
}
