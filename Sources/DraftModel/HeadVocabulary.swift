/// The frequency ranking behind a subset LM head (`model.head_vocab`); counting a data source's targets is
/// DraftTraining's part of it.
public enum HeadVocabulary {
    /// The `k` ids of the highest `counts` (ties to the smaller id), ascending by id: the order `LlamaModel.setHeadIDs`
    /// takes, in which the whole vocabulary is the identity.
    public static func top(counts: [Int], k: Int) -> [Int32] {
        let order = counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        return order.prefix(k).sorted().map { Int32($0) }
    }
}
