// Choosing the ids a subset LM head scores (`model.head_vocab`, FR-Spec / VocabTrim): the most frequent targets of
// one data source.
import DraftData
import DraftModel

extension HeadVocabulary {
    /// The `k` ids that occur most often as targets in `tokens` shards, ascending by id. Ties in frequency go to the
    /// smaller id, so the choice is a function of the data alone. Ids at or above `vocab`, negative (masked) targets
    /// and, where the shards carry loss masks (`masks`, aligned with `shards`: KD data), positions the loss never
    /// sees (the prompts) are not counted: the head is for the tokens the draft is trained to predict.
    public static func rank(shards: [TokenShard], masks: [LossMaskShard]? = nil, k: Int, vocab: Int) -> [Int32] {
        var counts = [Int](repeating: 0, count: vocab)
        let chunk = 1 << 16
        var buffer = [Int32](repeating: 0, count: chunk)
        var trained = [UInt8](repeating: 1, count: chunk)
        for (s, shard) in shards.enumerated() {
            // Every token but a shard's first is some window's target.
            var start = 1
            while start < shard.tokenCount {
                let n = min(chunk, shard.tokenCount - start)
                buffer.withUnsafeMutableBufferPointer { shard.read(from: start, count: n, into: $0.baseAddress!) }
                if let mask = masks?[s] {
                    trained.withUnsafeMutableBufferPointer { mask.read(from: start, count: n, into: $0.baseAddress!) }
                }
                for i in 0..<n where trained[i] != 0 && buffer[i] >= 0 && Int(buffer[i]) < vocab {
                    counts[Int(buffer[i])] += 1
                }
                start += n
            }
        }
        return top(counts: counts, k: k)
    }

    /// The ranking for a run's config: `head_vocab` ids of `head_vocab_source`'s training shards, or nil for a
    /// full head.
    public static func rank(config: ModelConfig, sources: [DataSource]) throws -> [Int32]? {
        guard let k = config.headVocab else { return nil }
        guard let name = config.headVocabSource, let source = sources.first(where: { $0.name == name }) else {
            throw ConfigError("model.head_vocab_source: expected a source named in data.sources, got '\(config.headVocabSource ?? "")'")
        }
        return rank(shards: source.train, masks: source.trainMasks, k: k, vocab: config.vocabSize)
    }
}
