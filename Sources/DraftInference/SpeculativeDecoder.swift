import DraftDevice
import DraftErrors
import DraftModel
import Foundation

/// Counts of one or more speculative runs, from which every figure `speculate` reports is derived (DESIGN.md,
/// "Speculative decoding").
public struct SpeculationCounts: Sendable, Equatable {
    /// Draft tokens proposed and kept.
    public var proposed = 0
    public var accepted = 0
    /// Tokens emitted (kept proposals plus each round's correction or bonus token) and target verification passes.
    public var emitted = 0
    public var targetPasses = 0
    /// Per proposal position i (0-based): rounds that proposed an i-th token, and rounds that kept it.
    public var proposedAt: [Int]
    public var acceptedAt: [Int]
    /// Wall time in the draft (proposals, with its sampling) and in the target (verification, with its sampling).
    public var draftSeconds = 0.0
    public var targetSeconds = 0.0
    /// The part of `targetSeconds` that prefilled the prompts: the same work with or without a draft, so the decode
    /// figures leave it out. Speculative runs prefill all but a prompt's last token (the first pass takes that one);
    /// plain runs the whole prompt and its first token's sampling.
    public var prefillSeconds = 0.0
    /// The part of `draftSeconds` that read the prompt (the draft's first forward of each run, which also gives its
    /// first proposal), and the draft's other forwards: a decode step's time is what the cost ratio c compares.
    public var draftPrefillSeconds = 0.0
    public var draftSteps = 0

    public init(gamma: Int) {
        proposedAt = [Int](repeating: 0, count: gamma)
        acceptedAt = proposedAt
    }

    public static func + (a: SpeculationCounts, b: SpeculationCounts) -> SpeculationCounts {
        var sum = a
        sum.proposed += b.proposed
        sum.accepted += b.accepted
        sum.emitted += b.emitted
        sum.targetPasses += b.targetPasses
        for i in sum.proposedAt.indices where i < b.proposedAt.count {
            sum.proposedAt[i] += b.proposedAt[i]
            sum.acceptedAt[i] += b.acceptedAt[i]
        }
        sum.draftSeconds += b.draftSeconds
        sum.targetSeconds += b.targetSeconds
        sum.prefillSeconds += b.prefillSeconds
        sum.draftPrefillSeconds += b.draftPrefillSeconds
        sum.draftSteps += b.draftSteps
        return sum
    }

    /// Accepted / proposed draft tokens.
    public var acceptanceRate: Double { proposed > 0 ? Double(accepted) / Double(proposed) : 0 }
    /// Tokens emitted per target pass (block efficiency; vLLM's mean acceptance length).
    public var tau: Double { targetPasses > 0 ? Double(emitted) / Double(targetPasses) : 0 }
    /// The share of rounds that kept the i-th proposal (i = 1...gamma), so it never rises with i.
    public var perPosition: [Double] {
        zip(acceptedAt, proposedAt).map { $1 > 0 ? Double($0) / Double($1) : 0 }
    }
}

/// One prompt's speculative result.
public struct SpeculativeSequence: Sendable {
    public var outputIDs: [Int32]
    public var finishReason: FinishReason
    public var counts: SpeculationCounts
    /// Wall time from the first forward to the last token.
    public var seconds: Double
}

/// Speculative decoding of one sequence at a time (batch 1, what a user's latency sees) with exact speculative
/// sampling: the draft proposes `gamma` tokens from q, the target scores its pending token and every proposal in one
/// forward, `SpeculativeVerifier` keeps a prefix and adds one token, and both KV caches are trimmed back to the kept
/// prefix. At temperature 0 both models are greedy and `GreedyVerifier` decides, so the output is the target's own
/// greedy output token for token.
///
/// Invariant between rounds: the emitted sequence is `S`; the target's cache holds `S` minus its last token (the
/// pending one), and the draft's cache holds a prefix of `S` (one token shorter still when the previous round kept
/// every proposal, since the draft never ran on its own last proposal). Each round feeds each model exactly the
/// tokens of `S` it has not seen.
public final class SpeculativeDecoder {
    public let target: DecoderEngine
    public let draft: DecoderEngine
    public let gamma: Int
    public let sampling: SamplingParameters
    /// Adaptive drafting: a round stops proposing at the first token after its first that the draft gives less than
    /// this probability (in its sampling distribution at the run's temperature; when greedy, in the softmax of its
    /// logits), so that the target's pass does not verify rows it would likely reject: each costs a share of a plain
    /// step on a CPU (`SpeculationReport.passCostSteps`). The first proposal is always made, since a round without one
    /// spends a draft step for nothing. 0 proposes `gamma` tokens every round. The output's distribution is the
    /// target's either way: when to stop depends on the draft alone.
    public let minDraftProbability: Float
    private let targetCache: KVCache
    private let draftCache: KVCache
    /// The distribution rows' length: both vocabularies fit (a draft's embedding may be padded past the target's).
    private let vocab: Int

    /// `capacity` bounds prompt + new tokens + gamma in both caches.
    public init(target: DecoderEngine, draft: DecoderEngine, gamma: Int, sampling: SamplingParameters,
                capacity: Int, minDraftProbability: Float = 0) throws {
        guard gamma >= 1 else { throw InputError("--gamma: expected an integer >= 1, got \(gamma)") }
        guard (0...1).contains(minDraftProbability) else {
            throw InputError("--draft-p-min: expected a probability in [0, 1], got \(minDraftProbability)")
        }
        try sampling.validate()
        self.minDraftProbability = minDraftProbability
        self.target = target
        self.draft = draft
        self.gamma = gamma
        self.sampling = sampling
        targetCache = try KVCache(config: target.config, device: target.device, slotCount: 1, capacity: capacity)
        draftCache = try KVCache(config: draft.config, device: draft.device, slotCount: 1, capacity: capacity)
        vocab = max(target.config.vocabSize, draft.config.vocabSize)
    }

    public var capacity: Int { targetCache.capacity }

    /// Decodes `prompt` speculatively; `seed` gives the prompt its own sampling streams.
    public func generate(prompt: [Int32], maxNewTokens: Int, stopTokens: Set<Int32>,
                         seed: UInt64) throws -> SpeculativeSequence {
        guard !prompt.isEmpty else { throw InputError("speculate: the prompt has no tokens") }
        guard prompt.count + maxNewTokens + gamma <= capacity else {
            throw InputError("a prompt of \(prompt.count) tokens plus \(maxNewTokens) new and \(gamma) proposed tokens exceeds the context of \(capacity)")
        }
        let start = monotonicSeconds()
        var counts = SpeculationCounts(gamma: gamma)
        try targetCache.reset(slot: 0)
        try draftCache.reset(slot: 0)
        var draftSampling = sampling, targetSampling = sampling
        draftSampling.seed = seed
        targetSampling.seed = seed ^ 0x5851_F42D_4C95_7F2D
        var draftSampler = Sampler(draftSampling)
        // The target's sampler only shapes distributions (its draws are discarded); acceptance draws its own stream.
        var targetShaper = Sampler(targetSampling)
        var uniforms = SplitMix64(seed: seed ^ 0x2545_F491_4F6C_DD1D)
        let greedy = sampling.temperature == 0

        var sequence = prompt
        var output: [Int32] = []
        var finish = FinishReason.length
        // Prefill all but the prompt's last token; that one is the target's first pending token.
        if prompt.count > 1 {
            let prefillStart = monotonicSeconds()
            _ = try target.forward([SequenceChunk(slot: 0, tokens: Array(prompt.dropLast()), start: 0)],
                                   cache: targetCache, select: .lastRow)
            counts.prefillSeconds = monotonicSeconds() - prefillStart
            counts.targetSeconds += counts.prefillSeconds
        }
        var q = [[Float]](repeating: [Float](repeating: 0, count: vocab), count: gamma)
        var p = [[Float]](repeating: [Float](repeating: 0, count: vocab), count: gamma + 1)

        decoding: while output.count < maxNewTokens {
            let budget = min(gamma, maxNewTokens - output.count - 1)
            // Draft: catch up on the tokens it has not seen, then propose `budget` tokens one at a time.
            var proposals: [Int32] = []
            let draftStart = monotonicSeconds()
            var feed = Array(sequence[draftCache.lengths[0]...])
            for i in 0..<budget {
                let readsPrompt = output.isEmpty && i == 0 && feed.count > 1
                let stepStart = monotonicSeconds()
                defer {
                    if readsPrompt { counts.draftPrefillSeconds += monotonicSeconds() - stepStart } else { counts.draftSteps += 1 }
                }
                let logits = try draft.forward([SequenceChunk(slot: 0, tokens: feed, start: draftCache.lengths[0])],
                                               cache: draftCache, select: .lastRow)
                let (token, probability) = q[i].withUnsafeMutableBufferPointer { row -> (Int32, Float) in
                    if greedy {
                        let best = Int32(argmax(logits.row(0)))
                        guard minDraftProbability > 0, let scores = logits.row(0).baseAddress,
                              let total = softmaxNumerators(scores, count: logits.vocab, scale: 1, into: row.baseAddress!)
                        else { return (best, 1) }
                        // The argmax's numerator is exp(0) = 1.
                        return (best, Float(1 / total))
                    }
                    row.update(repeating: 0)
                    let token = draftSampler.sample(logits: logits.row(0),
                                                    probabilities: UnsafeMutableBufferPointer(rebasing: row[0..<logits.vocab]))
                    return (token, row[Int(token)])
                }
                if i > 0 && probability < minDraftProbability { break }
                proposals.append(token)
                feed = [token]
            }
            counts.draftSeconds += monotonicSeconds() - draftStart

            // Target: its pending token (and, on the first round, the prompt) plus every proposal, in one forward.
            let targetStart = monotonicSeconds()
            let pendingFrom = targetCache.lengths[0]
            let chunk = Array(sequence[pendingFrom...]) + proposals
            let logits = try target.forward([SequenceChunk(slot: 0, tokens: chunk, start: pendingFrom)],
                                            cache: targetCache, select: .allRows)
            let firstScored = logits.firstRow[0] + chunk.count - proposals.count - 1
            let outcome: VerificationOutcome
            if greedy {
                let best = (0...proposals.count).map { Int32(argmax(logits.row(firstScored + $0))) }
                outcome = GreedyVerifier.verify(proposals: proposals, targetArgmax: best)
            } else {
                for i in 0...proposals.count {
                    p[i].withUnsafeMutableBufferPointer { row in
                        row.update(repeating: 0)
                        _ = targetShaper.sample(logits: logits.row(firstScored + i),
                                                probabilities: UnsafeMutableBufferPointer(rebasing: row[0..<logits.vocab]))
                    }
                }
                outcome = SpeculativeVerifier.verify(proposals: proposals, draft: q, target: p,
                                                     uniform: { uniforms.nextUnitInterval() })
            }
            counts.targetSeconds += monotonicSeconds() - targetStart

            counts.targetPasses += 1
            counts.proposed += proposals.count
            counts.accepted += outcome.accepted
            for i in 0..<proposals.count {
                counts.proposedAt[i] += 1
                if i < outcome.accepted { counts.acceptedAt[i] += 1 }
            }
            let emitted = Array(proposals.prefix(outcome.accepted)) + [outcome.next]
            counts.emitted += emitted.count

            // Roll both caches back to the kept prefix: the target keeps its pending token and the kept proposals
            // (the correction or bonus becomes the new pending token); the draft keeps what it saw of them.
            let kept = pendingFrom + (chunk.count - proposals.count) + outcome.accepted
            try targetCache.trim(slot: 0, to: kept)
            try draftCache.trim(slot: 0, to: min(draftCache.lengths[0], kept))
            for token in emitted {
                if stopTokens.contains(token) {
                    finish = .eos
                    break decoding
                }
                output.append(token)
                sequence.append(token)
                if output.count == maxNewTokens { break decoding }
            }
        }
        if output.count >= maxNewTokens { finish = .length }
        return SpeculativeSequence(outputIDs: output, finishReason: finish, counts: counts, seconds: monotonicSeconds() - start)
    }
}

/// Plain decoding of one prompt by one model (batch 1), timed the same way, for the wall-clock speedup.
public func plainDecode(engine: DecoderEngine, cache: KVCache, prompt: [Int32], maxNewTokens: Int,
                        stopTokens: Set<Int32>, sampling: SamplingParameters, seed: UInt64) throws -> SpeculativeSequence {
    let start = monotonicSeconds()
    let stream = try TokenStream(engine: engine, cache: cache, slot: 0, prompt: prompt,
                                 settings: GenerationSettings(sampling: sampling, maxNewTokens: maxNewTokens,
                                                              stopTokens: stopTokens), seed: seed)
    // The first call prefills the prompt and samples the first token from its last row.
    let first = try stream.next()
    var counts = SpeculationCounts(gamma: 0)
    counts.prefillSeconds = monotonicSeconds() - start
    if first != nil {
        while try stream.next() != nil {}
    }
    counts.emitted = stream.tokens.count
    counts.targetPasses = stream.tokens.count
    counts.targetSeconds = monotonicSeconds() - start
    return SpeculativeSequence(outputIDs: stream.tokens, finishReason: stream.finishReason ?? .length,
                               counts: counts, seconds: monotonicSeconds() - start)
}

private func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
