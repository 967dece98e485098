// Choosing the ids a subset LM head scores (`model.head_vocab`, FR-Spec / VocabTrim): the most frequent targets of
// one data source.
import DraftData
import DraftModel

extension HeadVocabulary {
    /// The `k` ids that occur most often as targets in `tokens` shards, ascending by id. Ties in frequency go to the
    /// smaller id, so the choice is a function of the data alone. Ids at or above `vocab`, and negative (masked)
    /// targets, are not counted.
    public static func rank(shards: [TokenShard], k: Int, vocab: Int) -> [Int32] {
        var counts = [Int](repeating: 0, count: vocab)
        let chunk = 1 << 16
        var buffer = [Int32](repeating: 0, count: chunk)
        for shard in shards {
            // Every token but a shard's first is some window's target.
            var start = 1
            while start < shard.tokenCount {
                let n = min(chunk, shard.tokenCount - start)
                buffer.withUnsafeMutableBufferPointer { shard.read(from: start, count: n, into: $0.baseAddress!) }
                for i in 0..<n where buffer[i] >= 0 && Int(buffer[i]) < vocab { counts[Int(buffer[i])] += 1 }
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
        return rank(shards: source.train, k: k, vocab: config.vocabSize)
    }
}
