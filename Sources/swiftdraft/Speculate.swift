import ArgumentParser
import DraftData
import DraftDevice
import DraftErrors
import DraftFormats
import DraftInference
import DraftModel
import DraftTraining
import Foundation

/// `swiftdraft speculate`: speculative decoding of a prompt file with exact speculative sampling, against plain
/// decoding of the same prompts by the target in the same run; DESIGN.md's table per prompt set and overall.
struct Speculate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a draft against its target: acceptance rate, tau, per-position acceptance, MBSU and wall-clock speedup.",
        discussion: """
            Batch 1. Each prompt is decoded plainly by the target, then speculatively (the draft proposes --gamma \
            tokens, the target verifies them in one pass; tokens are kept with probability min(1, p/q), the first \
            rejection resamples from norm(max(0, p - q)), a full acceptance adds a bonus token from p). At \
            temperature 0 the output equals the target's greedy output. per_position[i] is the share of rounds that \
            kept the (i+1)-th proposal. c is draft/target parameters (mbsu) or weight bytes (mbsu_bytes).
            """)

    @Option(help: "The target: .gguf, Hugging Face directory, checkpoint or run directory (runs on the CPU).")
    var target: String
    @Option(help: "The draft: .gguf, Hugging Face directory, .h5 checkpoint or run directory.") var draft: String
    @Option(help: "A JSONL prompt file ({\"id\",\"set\",\"prompt\"} or {\"id\",\"set\",\"messages\"}).") var prompts: String
    @Option(help: "Draft tokens proposed per target pass (at most, with --draft-p-min).") var gamma = 3
    @Option(help: "Adaptive drafting: stop a round's proposals at the first token after its first that the draft gives less than this probability (0: always gamma).")
    var draftPMin: Float = 0
    @Option(help: "Sampling temperature (0: greedy).") var temperature: Float = 0.6
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Nucleus mass (1: off).") var topP: Float = 1
    @Option(help: "New tokens per prompt at most.") var maxNewTokens = 128
    @Option(help: "Sampling seed; each prompt derives its own streams from it.") var seed: UInt64 = 0
    @Option(help: "Decode the draft's weights as stored (f32 for a checkpoint), or quantize an fp32 draft at load: q8_0 (the rows a Q8_0 GGUF export holds, keeping a subset head), f16 or bf16.")
    var draftDtype = "stored"
    @Option(help: "Score only this many ids in the draft's head (FR-Spec, no retraining): the ones most frequent as trained targets in --draft-head-vocab-source.")
    var draftHeadVocab: Int?
    @Option(help: "A token-shard directory (tokenize or distill output) whose training targets rank the ids for --draft-head-vocab; on KD shards only response tokens count.")
    var draftHeadVocabSource: String?
    @OptionGroup var draftDevice: DeviceOptions
    @Flag(help: "Render raw prompts as a user turn through the target's chat template.") var chat = false
    @Flag(help: "One JSON object: overall, sets, prompts.") var json = false

    func run() throws {
        do {
            try speculate()
        } catch {
            exitOnError(error)
        }
    }

    private func speculate() throws {
        let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
        try sampling.validate()
        guard gamma >= 1 else { throw InputError("--gamma: expected an integer >= 1, got \(gamma)") }
        guard (0...1).contains(draftPMin) else {
            throw InputError("--draft-p-min: expected a probability in [0, 1], got \(draftPMin)")
        }
        guard maxNewTokens >= 1 else { throw InputError("--max-new-tokens: expected an integer >= 1, got \(maxNewTokens)") }
        let entries = try readPromptFile(prompts)
        guard !entries.isEmpty else { throw InputError("--prompts \(prompts): no prompts in the file") }

        let targetDevice = CPUDevice(quantizedActivations: try .fromEnvironment())
        let draftDevice = try makeInferenceDevice(self.draftDevice.device)
        let targetModel = try loadModel(target, device: targetDevice)
        var draftModel = try loadModel(draft, device: draftDevice)
        switch (draftHeadVocab, draftHeadVocabSource) {
        case (nil, nil):
            break
        case (let k?, let path?):
            guard k >= 1, k < draftModel.config.vocabSize else {
                throw InputError("--draft-head-vocab \(k): expected 1 to \(draftModel.config.vocabSize - 1) (the draft's vocabulary is \(draftModel.config.vocabSize))")
            }
            let source = try DataSource(name: "draft-head-vocab-source", path: path)
            draftModel = try draftModel.withSubsetHead(HeadVocabulary.rank(shards: source.train, masks: source.trainMasks,
                                                                           k: k, vocab: draftModel.config.vocabSize))
        default:
            throw InputError("--draft-head-vocab and --draft-head-vocab-source go together")
        }
        if draftDtype != "stored" {
            let types: [String: GGMLType] = ["f32": .f32, "f16": .f16, "bf16": .bf16, "q8_0": .q8_0]
            guard let type = types[draftDtype] else {
                throw InputError("--draft-dtype \(draftDtype): expected stored, f32, f16, bf16 or q8_0")
            }
            draftModel = try draftModel.quantized(to: type, device: draftDevice)
        }
        guard targetModel.tokenizer.fingerprint == draftModel.tokenizer.fingerprint else {
            throw InputError("--draft \(draft) and --target \(target): different tokenizers (fingerprints \(draftModel.tokenizer.fingerprint.prefix(16))... and \(targetModel.tokenizer.fingerprint.prefix(16))...); a draft must share its target's vocabulary")
        }
        let tokens = try entries.map { try targetModel.promptTokens($0, chat: chat) }
        let context = min(targetModel.config.contextLength, draftModel.config.contextLength)
        for (entry, ids) in zip(entries, tokens) where ids.count + maxNewTokens + gamma > context {
            throw InputError("\(prompts): prompt '\(entry.id)' has \(ids.count) tokens; with --max-new-tokens \(maxNewTokens) and --gamma \(gamma) it exceeds the context of \(context) (target \(targetModel.config.contextLength), draft \(draftModel.config.contextLength))")
        }
        let capacity = (tokens.map(\.count).max() ?? 1) + maxNewTokens + gamma
        let targetEngine = try DecoderEngine(config: targetModel.config, weights: targetModel.weights, device: targetDevice)
        let draftEngine = try DecoderEngine(config: draftModel.config, weights: draftModel.weights, device: draftDevice)
        let decoder = try SpeculativeDecoder(target: targetEngine, draft: draftEngine, gamma: gamma, sampling: sampling,
                                             capacity: capacity, minDraftProbability: draftPMin)
        let plainCache = try KVCache(config: targetModel.config, device: targetEngine.device, slotCount: 1, capacity: capacity)
        let stops = Set(targetModel.config.eosTokenIDs)

        struct Row { var set: String; var plain: SpeculativeSequence; var spec: SpeculativeSequence }
        var rows: [Row] = []
        let started = Date()
        for (index, (entry, ids)) in zip(entries, tokens).enumerated() {
            let promptSeed = seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
            let plain = try plainDecode(engine: targetEngine, cache: plainCache, prompt: ids, maxNewTokens: maxNewTokens,
                                        stopTokens: stops, sampling: sampling, seed: promptSeed)
            let spec = try decoder.generate(prompt: ids, maxNewTokens: maxNewTokens, stopTokens: stops, seed: promptSeed)
            rows.append(Row(set: entry.set ?? "default", plain: plain, spec: spec))
            if !json, isatty(STDERR_FILENO) != 0 {
                let elapsed = Date().timeIntervalSince(started)
                let eta = elapsed / Double(index + 1) * Double(entries.count - index - 1)
                FileHandle.standardError.write(Data(String(format: "\r%d/%d prompts, eta %@   ", index + 1, entries.count,
                                                           formatDuration(eta)).utf8))
            }
        }
        if !json, isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }

        let c = Double(draftModel.parameterCount) / Double(max(targetModel.parameterCount, 1))
        let cBytes = Double(draftModel.weightBytes) / Double(max(targetModel.weightBytes, 1))
        func report(_ subset: [Row]) -> SpeculationReport {
            SpeculationReport(prompts: subset.count, gamma: gamma,
                              counts: subset.reduce(SpeculationCounts(gamma: gamma)) { $0 + $1.spec.counts },
                              plainTokens: subset.reduce(0) { $0 + $1.plain.outputIDs.count },
                              plainSeconds: subset.reduce(0) { $0 + $1.plain.seconds },
                              plainPrefillSeconds: subset.reduce(0) { $0 + $1.plain.counts.prefillSeconds },
                              specTokens: subset.reduce(0) { $0 + $1.spec.outputIDs.count },
                              specSeconds: subset.reduce(0) { $0 + $1.spec.seconds },
                              parameterRatio: c, byteRatio: cBytes)
        }
        let setNames = rows.map(\.set).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let overall = report(rows)
        let sets = setNames.map { name in (name, report(rows.filter { $0.set == name })) }

        if json {
            let object: [String: Any] = [
                "target": targetModel.source, "draft": draftModel.source, "gamma": gamma,
                "draft_p_min": Double(draftPMin), "temperature": Double(temperature), "max_new_tokens": maxNewTokens, "seed": seed,
                "overall": overall.json,
                "sets": Dictionary(uniqueKeysWithValues: sets.map { ($0.0, $0.1.json) }),
                "prompts": zip(entries, rows).map { entry, row -> [String: Any] in
                    ["id": entry.id, "set": row.set, "output_ids": row.spec.outputIDs.map(Int.init),
                     "proposed": row.spec.counts.proposed, "accepted": row.spec.counts.accepted,
                     "plain_output_ids": row.plain.outputIDs.map(Int.init)]
                },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
            return
        }
        print("target \(targetModel.source) (\(targetModel.parameterCount.formatted()) parameters)")
        print("draft  \(draftModel.source) (\(draftModel.parameterCount.formatted()) parameters); c = \(String(format: "%.4f", c)) by parameters, \(String(format: "%.4f", cBytes)) by weight bytes")
        print("gamma \(gamma)\(draftPMin > 0 ? " at most (stopping below a draft probability of \(draftPMin))" : ""), temperature \(temperature), \(entries.count) prompts, up to \(maxNewTokens) new tokens each")
        print(SpeculationTable.render(sets + [("overall", overall)]))
        var costLine = String(format: "measured cost ratio (draft decode step / plain target step) %.3f, verification pass %.2f plain steps",
                              overall.measuredCostRatio, overall.passCostSteps)
        if let breakEven = overall.breakEvenAcceptanceMeasured {
            costLine += String(format: ": speculation pays above an acceptance of %.3f at gamma %d", breakEven, gamma)
            if let ideal = overall.breakEvenAcceptance {
                costLine += String(format: " (%.3f were a pass one step)", ideal)
            }
        } else {
            costLine += String(format: ": no acceptance pays at gamma %d", gamma)
        }
        print(costLine)
    }
}

/// The terminal table of `speculate`.
enum SpeculationTable {
    static func render(_ rows: [(String, SpeculationReport)]) -> String {
        let header = ["set", "prompts", "acceptance", "tau", "per position", "MBSU", "plain t/s", "spec t/s", "speedup",
                      "decode speedup", "pass (steps)", "draft s", "target s"]
        let body = rows.map { name, r -> [String] in
            [name, "\(r.prompts)", String(format: "%.3f", r.acceptanceRate), String(format: "%.2f", r.tau),
             r.counts.perPosition.map { String(format: "%.2f", $0) }.joined(separator: " "), String(format: "%.2f", r.mbsu),
             String(format: "%.1f", r.tokensPerSecondPlain), String(format: "%.1f", r.tokensPerSecondSpec),
             String(format: "%.2fx", r.speedup), String(format: "%.2fx", r.decodeSpeedup),
             String(format: "%.2f", r.passCostSteps), String(format: "%.2f", r.counts.draftSeconds),
             String(format: "%.2f", r.counts.targetSeconds)]
        }
        let widths = header.indices.map { c in ([header] + body).map { $0[c].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return c == 0 || c == 4 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        return ([line(header)] + body.map(line)).joined(separator: "\n")
    }
}
