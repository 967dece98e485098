import DraftData
import DraftErrors
import DraftFormats
import DraftInference
import DraftTokenizer
import Foundation

/// What a `distill` run is asked to do (the command line's flags).
public struct DistillRequest: Sendable {
    public var target: String
    public var tokenizer: String?
    public var prompts: String?
    public var magpie: Int?
    public var output: String
    public var temperatures: [Float]
    public var maxNewTokens: Int
    public var topK: Int?
    public var batch: Int
    public var seed: UInt64

    public init(target: String, tokenizer: String?, prompts: String?, magpie: Int?, output: String,
                temperatures: [Float], maxNewTokens: Int, topK: Int?, batch: Int, seed: UInt64) {
        self.target = target
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.magpie = magpie
        self.output = output
        self.temperatures = temperatures
        self.maxNewTokens = maxNewTokens
        self.topK = topK
        self.batch = batch
        self.seed = seed
    }

    /// `--temperatures 0.6,0.8,1.0,0`: numbers >= 0 (0 is greedy), no repeats.
    public static func parseTemperatures(_ text: String) throws -> [Float] {
        var values: [Float] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = part.trimmingCharacters(in: .whitespaces)
            guard let value = Float(item), value.isFinite, value >= 0 else {
                throw InputError("--temperatures \(text): '\(item)' is not a number >= 0 (expected a comma-separated list such as 0.6,0.8,1.0,0; 0 is greedy)")
            }
            guard !values.contains(value) else {
                throw InputError("--temperatures \(text): \(item) appears twice (each temperature gets one response per prompt)")
            }
            values.append(value)
        }
        return values
    }

    /// Checks of the flags alone, before anything is loaded.
    public func validate() throws {
        guard !temperatures.isEmpty else { throw InputError("--temperatures: expected at least one temperature") }
        guard maxNewTokens >= 1 else { throw InputError("--max-new-tokens: expected an integer >= 1, got \(maxNewTokens)") }
        guard batch >= 1 else { throw InputError("--batch: expected an integer >= 1, got \(batch)") }
        if let topK, topK < 1 { throw InputError("--top-k-logits: expected an integer >= 1, got \(topK)") }
        switch (prompts, magpie) {
        case (_?, nil): break
        case (nil, let n?): guard n >= 1 else { throw InputError("--magpie: expected an integer >= 1, got \(n)") }
        default: throw InputError("--prompts and --magpie: expected exactly one of them")
        }
    }

    /// A (prompt, temperature) pair's sampler seed: a function of `--seed`, the prompt's id and the temperature only,
    /// so the response is the same whichever batch, order or restart it is drawn in.
    public static func seed(_ seed: UInt64, promptID: String, temperature: Float) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for byte in promptID.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        var z = seed ^ h ^ (UInt64(temperature.bitPattern) &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The settings that make a run's output what it is: a restart must give the same ones (`--batch` may differ).
struct DistillIdentity: Codable, Equatable {
    var target: String
    var tokenizerFingerprint: String
    var prompts: String?
    var magpie: Int?
    var temperatures: [Float]
    var maxNewTokens: Int
    var topKLogits: Int?
    var seed: UInt64

    enum CodingKeys: String, CodingKey {
        case target, prompts, magpie, temperatures, seed
        case tokenizerFingerprint = "tokenizer_fingerprint", maxNewTokens = "max_new_tokens", topKLogits = "top_k_logits"
    }
}

/// `manifest.json` of a distill directory: the run's identity, the loader's view (`DistillShardManifest`: format,
/// complete, splits, top_k), counts and the prompt filter's record. No API key, ever.
struct DistillManifest: Codable {
    var format = DistillShardManifest.format
    var version = 1
    var complete: Bool
    var settings: DistillIdentity
    var tokenizer: String?
    var vocabSize: Int
    var eosID: Int
    var topK: Int?
    var train: ShardManifest.Split
    var validation: ShardManifest.Split
    var counts: [String: Int]
    var filter: String
    var filtered: [FilteredPrompt]
    var validationPrompts: [String]

    enum CodingKeys: String, CodingKey {
        case format, version, complete, settings, tokenizer, train, validation, counts, filter, filtered
        case vocabSize = "vocab_size", eosID = "eos_id", topK = "top_k", validationPrompts = "validation_prompts"
    }
}

/// A `distill` run: checks everything it can before writing anything, then answers every (prompt, temperature) not
/// yet in `responses.jsonl`, appending each answer as it completes, and finally (re)writes the shards and the
/// manifest from the log. Restarted with the same arguments, it continues where a killed run stopped.
public final class DistillRun {
    public let request: DistillRequest
    public let target: any DistillTarget
    let directory: URL
    let log: (String) -> Void
    static let filterRule = "empty, truncated (Magpie instruction cut by --max-new-tokens), template-echo (chat-template markup or a leading role name), duplicate (same trimmed text as an earlier prompt), too-long (prompt + --max-new-tokens over the context)"

    /// Everything up front: the flags, the output directory (a new one, or this run's own), the target's tokenizer.
    /// `target` is loaded by the caller (native or URL) after `request.validate()`.
    public init(request: DistillRequest, target: any DistillTarget, log: @escaping (String) -> Void) {
        self.request = request
        self.target = target
        directory = URL(fileURLWithPath: request.output)
        self.log = log
    }

    var identity: DistillIdentity {
        DistillIdentity(target: request.target, tokenizerFingerprint: target.tokenizer.fingerprint,
                        prompts: request.prompts, magpie: request.magpie, temperatures: request.temperatures,
                        maxNewTokens: request.maxNewTokens, topKLogits: request.topK, seed: request.seed)
    }

    var manifestURL: URL { directory.appendingPathComponent("manifest.json") }

    /// Refuses an output directory that holds something other than this run (before anything is written).
    func checkOutputDirectory() throws -> Bool {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory) else { return false }
        guard isDirectory.boolValue else { throw InputError("--output \(directory.path): exists and is not a directory") }
        guard let data = fm.contents(atPath: manifestURL.path) else {
            let entries = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            guard entries.isEmpty else {
                throw InputError("--output \(directory.path): not empty and holds no distill manifest.json (expected a new directory or one of an earlier run of this command)")
            }
            return false
        }
        guard let manifest = try? JSONDecoder().decode(DistillManifest.self, from: data) else {
            throw InputError("\(manifestURL.path): not a distill manifest (expected format \(DistillShardManifest.format))")
        }
        let mine = identity
        if manifest.settings.tokenizerFingerprint != mine.tokenizerFingerprint {
            throw InputError("--target \(request.target): its tokenizer fingerprint \(mine.tokenizerFingerprint.prefix(12)) differs from the \(manifest.settings.tokenizerFingerprint.prefix(12)) of the run in \(directory.path)")
        }
        guard manifest.settings == mine else {
            let was = String(decoding: (try? JSONEncoder().encode(manifest.settings)) ?? Data(), as: UTF8.self)
            throw InputError("--output \(directory.path): holds a distill run with other settings (\(was)); restart it with the same arguments or use another directory")
        }
        return true
    }

    public func run() throws {
        let resuming = try checkOutputDirectory()
        // Prompt files are read (and refused) before the directory is made.
        let entries = try request.prompts.map { try readPromptFile($0) }
        let maxPrompt = target.maxPromptTokens(maxNewTokens: request.maxNewTokens)
        var selected: (kept: [DistillPrompt], filtered: [FilteredPrompt])?
        if let entries {
            selected = try selectPrompts(entries, maxPromptTokens: maxPrompt, source: "--prompts \(request.prompts!)",
                                         render: target.render)
            guard !selected!.kept.isEmpty else {
                throw InputError("--prompts \(request.prompts!): every prompt was filtered out (\(selected!.filtered.map { "\($0.id): \($0.reason)" }.joined(separator: ", ")))")
            }
        } else {
            _ = try target.magpieOpening()
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if !resuming { try writeManifest(complete: false, prompts: [], filtered: [], records: [], shards: nil) }
        let prompts: (kept: [DistillPrompt], filtered: [FilteredPrompt])
        if let selected { prompts = selected } else { prompts = try magpiePrompts(maxPrompt: maxPrompt) }

        let log = try ResponseLog(url: directory.appendingPathComponent("responses.jsonl"))
        var order: [ResponseKey: Int] = [:]
        var jobs: [DistillJob] = []
        var jobKeys: [ResponseKey] = []
        for prompt in prompts.kept {
            for temperature in request.temperatures {
                let key = ResponseKey(promptID: prompt.id, temperature: temperature)
                order[key] = order.count
                jobKeys.append(key)
            }
        }
        var done = Set<ResponseKey>()
        for record in log.records {
            guard order[record.key] != nil else {
                throw InputError("\(log.url.path): a record for prompt '\(record.promptID)' at temperature \(record.temperature), which this run's prompts and --temperatures do not include")
            }
            guard done.insert(record.key).inserted else {
                throw InputError("\(log.url.path): prompt '\(record.promptID)' at temperature \(record.temperature) is recorded twice")
            }
        }
        let byID = Dictionary(uniqueKeysWithValues: prompts.kept.map { ($0.id, $0) })
        for (i, key) in jobKeys.enumerated() where !done.contains(key) {
            jobs.append(DistillJob(index: i, promptIDs: byID[key.promptID]!.ids, temperature: key.temperature,
                                   seed: DistillRequest.seed(request.seed, promptID: key.promptID, temperature: key.temperature)))
        }
        if resuming { try writeManifest(complete: false, prompts: prompts.kept, filtered: prompts.filtered, records: log.records, shards: nil) }
        if !done.isEmpty { self.log("distill: resuming, \(done.count) of \(jobKeys.count) responses already in responses.jsonl") }

        var progress = DistillProgress(total: jobKeys.count, done: done.count, log: self.log, warmup: min(request.batch, jobs.count))
        try target.answer(jobs, maxNewTokens: request.maxNewTokens, batch: request.batch, topK: request.topK) { answer in
            let key = jobKeys[answer.index]
            let prompt = byID[key.promptID]!
            let record = ResponseRecord(promptID: prompt.id, set: prompt.set, temperature: key.temperature,
                                        prompt: prompt.text, promptIDs: prompt.ids, response: answer.text,
                                        responseIDs: answer.ids, finishReason: answer.finishReason.rawValue,
                                        seed: DistillRequest.seed(request.seed, promptID: key.promptID, temperature: key.temperature),
                                        topKIDs: answer.topKIDs, topKLogprobs: answer.topKLogprobs)
            try log.append(record)
            progress.finished(tokens: answer.ids.count + (answer.finishReason == .eos ? 1 : 0))
        }
        progress.summary()

        let records = log.records.sorted { order[$0.key]! < order[$1.key]! }
        let validationIDs = Self.validationPrompts(prompts.kept.map(\.id))
        let shards = try DistillShards.write(
            train: records.filter { !validationIDs.contains($0.promptID) },
            validation: records.filter { validationIDs.contains($0.promptID) }, to: directory,
            eos: target.tokenizer.eosTokenID, vocabSize: target.tokenizer.vocabSize,
            fingerprint: target.tokenizer.fingerprint, topK: request.topK)
        try writeManifest(complete: true, prompts: prompts.kept, filtered: prompts.filtered, records: records, shards: shards)
    }

    /// The prompts held out for validation: a deterministic ~2% (by a hash of the id; none under 10 prompts), with
    /// every temperature of a prompt on the same side so validation never sees a prompt training saw.
    static func validationPrompts(_ ids: [String]) -> Set<String> {
        guard ids.count >= 10 else { return [] }
        let count = max(1, ids.count / 50)
        let ranked = ids.sorted { DistillRequest.seed(0, promptID: $0, temperature: 0) < DistillRequest.seed(0, promptID: $1, temperature: 0) }
        return Set(ranked.prefix(count))
    }

    /// `--magpie N`: the target writes N instructions from the chat template's open user turn (temperature 1, each
    /// with its own seed), which pass the filter and become conversations. Kept in `magpie-prompts.jsonl` (and
    /// what was filtered in `magpie-filtered.json`) so a restart answers the same ones without writing them again.
    func magpiePrompts(maxPrompt: Int) throws -> (kept: [DistillPrompt], filtered: [FilteredPrompt]) {
        let keptURL = directory.appendingPathComponent("magpie-prompts.jsonl")
        let filteredURL = directory.appendingPathComponent("magpie-filtered.json")
        if FileManager.default.fileExists(atPath: keptURL.path), let data = FileManager.default.contents(atPath: filteredURL.path) {
            let earlier = try JSONDecoder().decode([FilteredPrompt].self, from: data)
            let entries = try readPromptFile(keptURL.path)
            let selected = try selectPrompts(entries, maxPromptTokens: maxPrompt, source: keptURL.path, render: target.render)
            return (selected.kept, earlier + selected.filtered)
        }
        let n = request.magpie!
        let opening = try target.magpieOpening()
        let jobs = (0..<n).map {
            DistillJob(index: $0, promptIDs: opening.ids, temperature: 1,
                       seed: DistillRequest.seed(request.seed, promptID: "magpie-\($0)", temperature: 1))
        }
        var instructions = [DistillAnswer?](repeating: nil, count: n)
        var progress = DistillProgress(total: n, done: 0, log: log, what: "instructions", warmup: min(request.batch, n))
        try target.answer(jobs, maxNewTokens: request.maxNewTokens, batch: request.batch, topK: nil) {
            instructions[$0.index] = $0
            progress.finished(tokens: $0.ids.count)
        }
        var entries: [PromptEntry] = []
        var filtered: [FilteredPrompt] = []
        for (i, answer) in instructions.enumerated() {
            let id = "magpie-\(i)"
            let text = answer!.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if let reason = PromptFilter.reason(content: answer!.text, truncated: answer!.finishReason == .length) {
                filtered.append(FilteredPrompt(id: id, reason: reason.rawValue))
                continue
            }
            entries.append(PromptEntry(id: id, set: "magpie", content: .messages([ChatMessage(role: "user", content: text)])))
        }
        let selected = try selectPrompts(entries, maxPromptTokens: maxPrompt, source: "--magpie", render: target.render)
        let allFiltered = filtered + selected.filtered
        guard !selected.kept.isEmpty else {
            throw InputError("--magpie \(n): every instruction the target wrote was filtered out (\(allFiltered.map { "\($0.id): \($0.reason)" }.joined(separator: ", ")))")
        }
        var lines = Data()
        for entry in entries where selected.kept.contains(where: { $0.id == entry.id }) {
            guard case .messages(let turns) = entry.content else { continue }
            let object: [String: Any] = ["id": entry.id, "set": "magpie",
                                         "messages": turns.map { ["role": $0.role, "content": $0.content] }]
            lines += try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) + Data("\n".utf8)
        }
        try writeFile(try JSONEncoder().encode(filtered), to: filteredURL)
        try writeFile(lines, to: keptURL)
        return (selected.kept, allFiltered)
    }

    func writeManifest(complete: Bool, prompts: [DistillPrompt], filtered: [FilteredPrompt],
                       records: [ResponseRecord], shards: DistillShards.Written?) throws {
        let empty = ShardManifest.Split(files: [], tokens: 0, documents: 0)
        var counts: [String: Int] = [
            "prompts": prompts.count, "filtered": filtered.count, "responses": records.count,
            "expected_responses": prompts.count * request.temperatures.count,
            "response_tokens": records.reduce(0) { $0 + $1.responseIDs.count },
            "prompt_tokens": records.reduce(0) { $0 + $1.promptIDs.count },
        ]
        for reason in [FinishReason.eos, .length] {
            counts["finish_\(reason.rawValue)"] = records.filter { $0.finishReason == reason.rawValue }.count
        }
        let validation = Self.validationPrompts(prompts.map(\.id))
        let manifest = DistillManifest(
            complete: complete, settings: identity, tokenizer: request.tokenizer, vocabSize: target.tokenizer.vocabSize,
            eosID: Int(target.tokenizer.eosTokenID), topK: request.topK, train: shards?.train ?? empty,
            validation: shards?.validation ?? empty, counts: counts, filter: Self.filterRule, filtered: filtered,
            validationPrompts: validation.sorted())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try writeFile(try encoder.encode(manifest), to: manifestURL)
    }

    /// `data` under a temporary name, flushed, then renamed into place.
    func writeFile(_ data: Data, to url: URL) throws {
        let temporary = url.appendingPathExtension("tmp")
        try data.write(to: temporary)
        let fd = open(temporary.path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary.path, url.path) == 0 else {
            throw InputError("\(url.path): cannot rename \(temporary.lastPathComponent) into place")
        }
    }
}

/// The progress line of a distill run on stderr, at most every two seconds: responses done, tokens, tokens/s and an
/// ETA.
///
/// Responses finish in waves (a batch of `warmup` sequences starts together, and with continuous batching they keep
/// finishing a few at a time), so a rate over the last few finished responses swings wildly: right after a wave the
/// tokens of a whole batch land at once, right before one almost nothing does. The rate is therefore taken over this
/// run's whole time, tokens of finished responses over seconds since the run started, and shown only once a first
/// wave (`warmup` responses) has finished; before that every response of the run is still in flight and no rate means
/// anything. The ETA is the time per finished response so far times the responses left.
public struct DistillProgress {
    public let total: Int
    public private(set) var done: Int
    let log: (String) -> Void
    let what: String
    let warmup: Int
    let clock: () -> UInt64
    let start: UInt64
    public private(set) var tokens = 0
    public private(set) var finishedHere = 0
    var lastReport: UInt64?

    /// `done` responses were already in the output when this run started; `clock` gives nanoseconds (monotonic).
    public init(total: Int, done: Int, log: @escaping (String) -> Void, what: String = "responses", warmup: Int = 1,
                clock: @escaping () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.total = total
        self.done = done
        self.log = log
        self.what = what
        self.warmup = max(1, warmup)
        self.clock = clock
        start = clock()
    }

    var seconds: Double { Double(clock() - start) / 1e9 }

    /// Tokens per second of this run so far, once a first wave has finished.
    public var rate: Double? {
        finishedHere >= warmup ? Double(tokens) / max(seconds, 1e-9) : nil
    }

    /// Seconds until every response is done at this run's pace so far, once a first wave has finished.
    public var eta: Double? {
        finishedHere >= warmup ? Double(total - done) * seconds / Double(finishedHere) : nil
    }

    /// Records one finished response of `count` tokens; prints at most one line every 2 s (and always the last).
    public mutating func finished(tokens count: Int) {
        done += 1
        finishedHere += 1
        tokens += count
        let now = clock()
        if let last = lastReport, now - last < 2_000_000_000, done < total { return }
        lastReport = now
        if let rate, let eta {
            log(String(format: "distill: %d/%d %@, %d tokens, %.1f tokens/s, ETA %@", done, total, what, tokens, rate,
                       formatDuration(eta)))
        } else {
            log(String(format: "distill: %d/%d %@, %d tokens (rate and ETA once %d responses of this run are done)",
                       done, total, what, tokens, warmup))
        }
    }

    func summary() {
        log(String(format: "distill: %d %@ made in this run, %d target tokens in %.2fs: %.1f tokens/s", finishedHere,
                   what, tokens, seconds, Double(tokens) / max(seconds, 1e-9)))
    }
}
