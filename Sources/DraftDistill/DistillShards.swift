import DraftData
import DraftErrors
import Foundation

/// Token shards of a distill run, written from `responses.jsonl` alone (the run's source of truth), so a restarted
/// or finished run rebuilds exactly the records' tokens whatever order they completed in.
///
/// Each record is one document: prompt ids, response ids, then EOS. Its loss mask is 0 over the prompt (context only),
/// 1 over the response and over the EOS when the target ended the response itself (`finish_reason` `eos`; a response
/// cut at `--max-new-tokens` did not end, so its EOS is not a target). With top-K the sidecar has a row at each
/// position whose mask is 1.
public enum DistillShards {
    /// Tokens per shard file at most (documents never straddle two files).
    public static let shardTokens = 32 << 20

    public struct Written {
        public var train: ShardManifest.Split
        public var validation: ShardManifest.Split
    }

    /// Writes `train-NNN.*` from `train` and `val-NNN.*` from `validation` into `directory`, each under a temporary
    /// name then renamed; stale shards of an earlier build that are no longer part of it are removed.
    public static func write(train: [ResponseRecord], validation: [ResponseRecord], to directory: URL, eos: Int32,
                             vocabSize: Int, fingerprint: String, topK: Int?) throws -> Written {
        let fm = FileManager.default
        let written = Written(
            train: try writeSplit("train", train, directory: directory, eos: eos, vocabSize: vocabSize, fingerprint: fingerprint, topK: topK),
            validation: try writeSplit("val", validation, directory: directory, eos: eos, vocabSize: vocabSize, fingerprint: fingerprint, topK: topK))
        let keep = Set((written.train.files + written.validation.files).flatMap { file -> [String] in
            let stem = (file as NSString).deletingPathExtension
            return [file, stem + "." + LossMaskShard.fileExtension, stem + "." + TeacherTopKShard.fileExtension]
        })
        for file in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        where (file.hasPrefix("train-") || file.hasPrefix("val-")) && !keep.contains(file) {
            try? fm.removeItem(at: directory.appendingPathComponent(file))
        }
        return written
    }

    private static func writeSplit(_ prefix: String, _ records: [ResponseRecord], directory: URL, eos: Int32,
                                   vocabSize: Int, fingerprint: String, topK: Int?) throws -> ShardManifest.Split {
        var files: [String] = []
        var tokens: [Int32] = [], mask: [UInt8] = []
        var rows: [[(id: Int32, logprob: Float)]?] = []
        var documents = 0, totalTokens = 0, totalDocuments = 0
        func flush() throws {
            guard !tokens.isEmpty else { return }
            let name = String(format: "%@-%03d.bin", prefix, files.count)
            let url = directory.appendingPathComponent(name)
            try TokenShardWriter.write(tokens, documents: documents, vocabSize: vocabSize, fingerprint: fingerprint, to: url)
            try LossMaskShard.write(mask, to: LossMaskShard.url(forShard: url))
            if let topK { try TeacherTopKShard.write(rows: rows, k: topK, vocabSize: vocabSize, to: TeacherTopKShard.url(forShard: url)) }
            files.append(name)
            totalTokens += tokens.count
            totalDocuments += documents
            tokens.removeAll(keepingCapacity: true)
            mask.removeAll(keepingCapacity: true)
            rows.removeAll(keepingCapacity: true)
            documents = 0
        }
        for record in records {
            let length = record.promptIDs.count + record.responseIDs.count + 1
            if !tokens.isEmpty && tokens.count + length > shardTokens { try flush() }
            let ended = record.finishReason == "eos"
            tokens += record.promptIDs
            tokens += record.responseIDs
            tokens.append(eos)
            mask += [UInt8](repeating: 0, count: record.promptIDs.count)
            mask += [UInt8](repeating: 1, count: record.responseIDs.count)
            mask.append(ended ? 1 : 0)
            documents += 1
            if let topK {
                let expected = record.responseIDs.count + (ended ? 1 : 0)
                guard let ids = record.topKIDs, let logprobs = record.topKLogprobs,
                      ids.count == expected * topK, logprobs.count == expected * topK else {
                    throw InputError("responses.jsonl: record \(record.promptID) at temperature \(record.temperature) has no top-K rows for its \(expected) trained positions (expected \(expected) x K \(topK))")
                }
                rows += [[(id: Int32, logprob: Float)]?](repeating: nil, count: record.promptIDs.count)
                for r in 0..<expected {
                    rows.append((0..<topK).map { (ids[r * topK + $0], logprobs[r * topK + $0]) })
                }
                if !ended { rows.append(nil) }
            }
        }
        try flush()
        return ShardManifest.Split(files: files, tokens: totalTokens, documents: totalDocuments)
    }
}
