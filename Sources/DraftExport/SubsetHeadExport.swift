// What an exported subset-head draft (`model.head_vocab`) carries in its full-vocabulary head.
import DraftModel

extension LlamaModel {
    /// Prepares a subset-head draft for a full-vocabulary export: other runtimes score every row of `lm_head`, and a
    /// Llama head has no bias that could give the rows outside the subset `-inf`. An untied head's rows outside the
    /// subset were never trained (only decayed), so they are set to zero: those ids then get logit 0 elsewhere, not
    /// probability 0 as in SwiftDraft. A tied head's rows are the input embeddings and are kept as they are.
    /// Returns how many rows were zeroed.
    @discardableResult
    public func zeroHeadRowsOutsideSubset() throws -> Int {
        guard let ids = headIDs, !config.tieEmbeddings, ids.count < config.vocabSize else { return 0 }
        var parameters = try readParameters()
        let head = layout.head, dim = config.dim
        var inSubset = [Bool](repeating: false, count: config.vocabSize)
        for id in ids { inSubset[Int(id)] = true }
        for v in 0..<config.vocabSize where !inSubset[v] {
            let start = head.offset + v * dim
            parameters.replaceSubrange(start..<(start + dim), with: repeatElement(0, count: dim))
        }
        try setParameters(parameters)
        return config.vocabSize - ids.count
    }
}
