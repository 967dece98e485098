import DraftErrors
import Foundation

/// Perplexity of a token sequence as `llama-perplexity` counts it (tools/perplexity/perplexity.cpp, default mode):
///
/// - the text is tokenized once, with BOS in front when the model adds BOS;
/// - it is cut into `tokens.count / context` whole chunks of `context` tokens (the remainder is dropped), and at
///   least two chunks are needed;
/// - each chunk is evaluated alone from an empty cache, its first token replaced by BOS when the model adds BOS;
/// - only the second half is scored: the logits at positions `context/2 ..< context-1` predict the tokens at
///   `context/2 + 1 ..< context`, i.e. `context - context/2 - 1` tokens per chunk (the first half is context only);
/// - `nll` is the mean over all scored tokens of `-log softmax(logits)[next token]` (in double), `ppl = exp(nll)`.
public struct PerplexityResult: Sendable {
    public var textTokens: Int
    public var chunks: Int
    public var context: Int
    public var scoredTokens: Int
    public var meanNLL: Double
    public var perplexity: Double { exp(meanNLL) }
}

public func perplexity(engine: DecoderEngine, tokens: [Int32], context: Int, bos: Int32?) throws -> PerplexityResult {
    guard context >= 4 else { throw InputError("--context: expected at least 4 tokens, got \(context)") }
    guard context <= engine.config.contextLength else {
        throw InputError("--context \(context) is longer than the model's context of \(engine.config.contextLength)")
    }
    guard tokens.count >= 2 * context else {
        throw InputError("score: the text has \(tokens.count) tokens; a context of \(context) needs at least \(2 * context)")
    }
    let chunks = tokens.count / context
    let first = context / 2
    let cache = try KVCache(config: engine.config, device: engine.device, slotCount: 1, capacity: context)
    var nll = 0.0
    var count = 0
    for c in 0..<chunks {
        var chunk = Array(tokens[(c * context)..<((c + 1) * context)])
        if let bos { chunk[0] = bos }
        try cache.reset(slot: 0)
        let logits = try engine.forward([SequenceChunk(slot: 0, tokens: chunk, start: 0)], cache: cache,
                                        select: .allRows)
        for j in first..<(context - 1) {
            nll -= logSoftmax(logits.row(j), at: Int(chunk[j + 1]))
            count += 1
        }
    }
    return PerplexityResult(textTokens: tokens.count, chunks: chunks, context: context, scoredTokens: count,
                            meanNLL: nll / Double(count))
}

/// `log softmax(row)[index]` in double precision.
func logSoftmax(_ row: UnsafeBufferPointer<Float>, at index: Int) -> Double {
    var maximum = -Float.infinity
    for value in row where value > maximum { maximum = value }
    var sum = 0.0
    for value in row { sum += exp(Double(value - maximum)) }
    return Double(row[index] - maximum) - log(sum)
}
