import DraftErrors
import Foundation

/// What ends a sequence, and how its tokens are drawn.
public struct GenerationSettings: Sendable {
    public var sampling: SamplingParameters
    public var maxNewTokens: Int
    /// Any of these ends the sequence (it is not part of the output): the model's `eosTokenIDs`.
    public var stopTokens: Set<Int32>

    public init(sampling: SamplingParameters, maxNewTokens: Int, stopTokens: Set<Int32>) {
        self.sampling = sampling
        self.maxNewTokens = maxNewTokens
        self.stopTokens = stopTokens
    }

    /// Prompt `index`'s sampler seed: its own stream, so its tokens do not depend on its batch or its neighbours.
    public func seed(forPrompt index: Int) -> UInt64 {
        sampling.seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// A stop token was drawn.
    case eos
    /// `maxNewTokens` were drawn, or the context is full.
    case length
}

/// One prompt's result.
public struct GeneratedSequence: Sendable {
    /// The prompt's index in the list given to the generator.
    public var index: Int
    public var promptTokens: Int
    /// New tokens, the stop token excluded.
    public var outputIDs: [Int32]
    public var finishReason: FinishReason
    /// Wall time of the forward that prefilled the prompt (and drew the first token).
    public var prefillSeconds: Double
    /// Wall time of the decode steps after it, until the sequence finished (steps shared with the batch's other
    /// sequences count in full for each).
    public var decodeSeconds: Double
    /// Decode steps after the prefill (tokens drawn in `decodeSeconds`, a final stop token included).
    public var decodeSteps: Int
}

/// Tokens of one prompt, one at a time: prefill on the first call, then one decode step per call, from slot `slot`
/// of `cache`. `nil` once a stop token is drawn or `maxNewTokens` are out.
public final class TokenStream {
    public let engine: DecoderEngine
    public let cache: KVCache
    public let slot: Int
    public let settings: GenerationSettings
    public private(set) var tokens: [Int32] = []
    public private(set) var finishReason: FinishReason?
    private var prompt: [Int32]
    private var sampler: Sampler
    private var probabilities: [Float]

    public init(engine: DecoderEngine, cache: KVCache, slot: Int, prompt: [Int32], settings: GenerationSettings,
                seed: UInt64? = nil) throws {
        guard !prompt.isEmpty else { throw InputError("generate: the prompt has no tokens") }
        guard prompt.count <= cache.capacity else {
            throw InputError("a prompt of \(prompt.count) tokens is longer than the context of \(cache.capacity)")
        }
        self.engine = engine
        self.cache = cache
        self.slot = slot
        self.prompt = prompt
        self.settings = settings
        var sampling = settings.sampling
        sampling.seed = seed ?? settings.seed(forPrompt: 0)
        sampler = Sampler(sampling)
        probabilities = [Float](repeating: 0, count: engine.config.vocabSize)
        try cache.reset(slot: slot)
    }

    /// The next token, or nil when the sequence has ended.
    public func next() throws -> Int32? {
        guard finishReason == nil else { return nil }
        if tokens.count >= settings.maxNewTokens || (!tokens.isEmpty && cache.lengths[slot] >= cache.capacity) {
            finishReason = .length
            return nil
        }
        let chunk = tokens.isEmpty ? SequenceChunk(slot: slot, tokens: prompt, start: 0)
            : SequenceChunk(slot: slot, tokens: [tokens[tokens.count - 1]], start: cache.lengths[slot])
        let logits = try engine.forward([chunk], cache: cache, select: .lastRow)
        let token = probabilities.withUnsafeMutableBufferPointer {
            sampler.sample(logits: logits.row(0), probabilities: $0)
        }
        if settings.stopTokens.contains(token) {
            finishReason = .eos
            return nil
        }
        tokens.append(token)
        return token
    }
}

/// Many prompts through one KV cache of `batchSize` slots, with continuous batching: every step is one forward over
/// the running sequences' last tokens plus the prompts of newly admitted ones, and a finished sequence's slot takes
/// the next prompt at once. This is what `distill` runs; `generate` runs it too (batch 1 by default).
///
/// A prompt equal to one already in the cache is not prefilled again (`distill` answers each prompt at four
/// temperatures, and its prompts are longer than its answers). Admitted in the same step as its twin, a sequence takes
/// the twin's keys and values after the forward and draws its first token from the twin's logits: the same numbers
/// its own prefill would give, since every row's products and attention depend on that row alone. Admitted later, it
/// copies all but the last prompt position from the running twin and prefills only the last.
public final class BatchGenerator {
    public let engine: DecoderEngine
    public let cache: KVCache

    private struct Running {
        let index: Int
        let promptTokens: Int
        var sampler: Sampler
        var output: [Int32] = []
        var prefillSeconds = 0.0
        var decodeSeconds = 0.0
        var decodeSteps = 0
        var admitted = true
    }

    /// Whether equal prompts share one prefill (on by default; off only to compare against).
    public var sharesPrompts = true
    /// How the last `generate` call prefilled its prompts.
    public private(set) var prefill = PrefillCounts()

    /// Prompt tokens a `generate` call ran through the model, and the prompts that took a twin's prefill instead.
    public struct PrefillCounts: Equatable, Sendable {
        /// Prompt positions computed (a prompt copied from a running twin counts its last position only).
        public var tokens = 0
        /// Prompts admitted with their twin in one step, which took its keys, values and logits.
        public var sameStep = 0
        /// Prompts admitted while a twin was running, which copied all but their last position from it.
        public var fromRunning = 0

        public init(tokens: Int = 0, sameStep: Int = 0, fromRunning: Int = 0) {
            self.tokens = tokens
            self.sameStep = sameStep
            self.fromRunning = fromRunning
        }
    }

    public init(engine: DecoderEngine, batchSize: Int, capacity: Int? = nil) throws {
        self.engine = engine
        cache = try KVCache(config: engine.config, device: engine.device, slotCount: batchSize, capacity: capacity)
    }

    /// Generates for every prompt and hands each result to `finished` as soon as it completes (not in prompt
    /// order). Prompts longer than the context are refused before anything runs.
    ///
    /// `sampling`, when given, is each prompt's own temperature and seed (one batch can mix temperatures; a seed
    /// tied to the prompt, not its position in this call, lets a resumed run draw the same tokens). `observe` sees
    /// every drawn token (a stop token included) with the logits it was drawn from, e.g. to keep the target's top-K.
    public func generate(prompts: [[Int32]], settings: GenerationSettings, sampling: [SamplingParameters]? = nil,
                         observe: ((_ index: Int, _ logits: UnsafeBufferPointer<Float>, _ token: Int32) -> Void)? = nil,
                         finished: (GeneratedSequence) throws -> Void) throws {
        precondition(sampling == nil || sampling!.count == prompts.count, "one SamplingParameters per prompt")
        for (i, prompt) in prompts.enumerated() {
            guard !prompt.isEmpty else { throw InputError("prompt \(i + 1) has no tokens") }
            guard prompt.count <= cache.capacity else {
                throw InputError("prompt \(i + 1) has \(prompt.count) tokens, longer than the context of \(cache.capacity)")
            }
        }
        cache.resetAll()
        prefill = PrefillCounts()
        var slots = [Running?](repeating: nil, count: cache.slotCount)
        var nextPrompt = 0
        var probabilities = [Float](repeating: 0, count: engine.config.vocabSize)
        var chunks: [SequenceChunk] = []
        var chunkSlots: [Int] = []
        // Slots admitted this step that take a twin's prefill: (slot, the twin's chunk).
        var twins: [(slot: Int, chunk: Int)] = []
        while true {
            chunks.removeAll(keepingCapacity: true)
            chunkSlots.removeAll(keepingCapacity: true)
            twins.removeAll(keepingCapacity: true)
            for s in 0..<cache.slotCount {
                if slots[s] == nil, nextPrompt < prompts.count, settings.maxNewTokens > 0 {
                    var parameters = settings.sampling
                    parameters.seed = settings.seed(forPrompt: nextPrompt)
                    let prompt = prompts[nextPrompt]
                    slots[s] = Running(index: nextPrompt, promptTokens: prompt.count,
                                       sampler: Sampler(sampling?[nextPrompt] ?? parameters))
                    try cache.reset(slot: s)
                    let twinSlots = !sharesPrompts ? [] : (0..<cache.slotCount).filter { t in
                        t != s && slots[t] != nil && prompts[slots[t]!.index] == prompt
                    }
                    // A twin prefilled whole in this step, else one that is running.
                    let leader = twinSlots.lazy.compactMap { chunkSlots.firstIndex(of: $0) }
                        .first { chunks[$0].start == 0 }
                    let running = twinSlots.first { !slots[$0]!.admitted }
                    if let leader {
                        twins.append((s, leader))
                        prefill.sameStep += 1
                    } else if let twin = running, prompt.count > 1 {
                        try cache.copyPrefix(from: twin, to: s, length: prompt.count - 1)
                        chunks.append(SequenceChunk(slot: s, tokens: [prompt.last!], start: prompt.count - 1))
                        chunkSlots.append(s)
                        prefill.fromRunning += 1
                        prefill.tokens += 1
                    } else {
                        chunks.append(SequenceChunk(slot: s, tokens: prompt, start: 0))
                        chunkSlots.append(s)
                        prefill.tokens += prompt.count
                    }
                    nextPrompt += 1
                } else if let running = slots[s], let last = running.output.last {
                    chunks.append(SequenceChunk(slot: s, tokens: [last], start: cache.lengths[s]))
                    chunkSlots.append(s)
                }
            }
            if chunks.isEmpty {
                // maxNewTokens 0: every prompt finishes with nothing drawn.
                while nextPrompt < prompts.count {
                    try finished(GeneratedSequence(index: nextPrompt, promptTokens: prompts[nextPrompt].count,
                                                   outputIDs: [], finishReason: .length, prefillSeconds: 0,
                                                   decodeSeconds: 0, decodeSteps: 0))
                    nextPrompt += 1
                }
                return
            }
            let start = DispatchTime.now().uptimeNanoseconds
            let logits = try engine.forward(chunks, cache: cache, select: .lastRow)
            for (s, c) in twins {
                try cache.copyPrefix(from: chunkSlots[c], to: s, length: slots[s]!.promptTokens)
            }
            var ended: [(Int, FinishReason)] = []
            let drawing = chunkSlots.enumerated().map { (slot: $0.element, chunk: $0.offset) } + twins
            for (s, c) in drawing {
                let token = probabilities.withUnsafeMutableBufferPointer {
                    slots[s]!.sampler.sample(logits: logits.row(c), probabilities: $0)
                }
                observe?(slots[s]!.index, logits.row(c), token)
                if settings.stopTokens.contains(token) {
                    ended.append((s, .eos))
                    continue
                }
                slots[s]!.output.append(token)
                if slots[s]!.output.count >= settings.maxNewTokens || cache.lengths[s] >= cache.capacity {
                    ended.append((s, .length))
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            for (s, _) in drawing {
                if slots[s]!.admitted {
                    slots[s]!.prefillSeconds = seconds
                    slots[s]!.admitted = false
                } else {
                    slots[s]!.decodeSeconds += seconds
                    slots[s]!.decodeSteps += 1
                }
            }
            for (s, reason) in ended {
                let r = slots[s]!
                slots[s] = nil
                try finished(GeneratedSequence(index: r.index, promptTokens: r.promptTokens, outputIDs: r.output,
                                               finishReason: reason, prefillSeconds: r.prefillSeconds,
                                               decodeSeconds: r.decodeSeconds, decodeSteps: r.decodeSteps))
            }
        }
    }
}
