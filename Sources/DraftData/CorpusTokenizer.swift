import DraftTokenizer
import Dispatch
import Foundation

/// Turns text files or JSONL records into token shards (`swiftdraft tokenize`).
public struct CorpusTokenizer {
    public enum Format: String, Sendable { case text, jsonl }

    public struct Summary: Sendable {
        public var documents = 0
        public var trainTokens = 0
        public var validationTokens = 0
        public var inputBytes = 0
        public var seconds = 0.0
        public var skippedFiles: [String] = []
        public var megabytesPerSecond: Double { Double(inputBytes) / 1e6 / max(seconds, 1e-9) }
    }

    public let tokenizer: any Tokenizer
    public let tokenizerSpec: String
    public var format: Format = .text
    public var field = "text"
    /// Fraction of documents held out for validation, chosen by a hash of the document's index so the split is
    /// reproducible and spread over the whole corpus.
    public var validationFraction = 0.0
    /// Tokens per shard file.
    public var shardTokens = 100_000_000

    public init(tokenizer: any Tokenizer, tokenizerSpec: String) {
        self.tokenizer = tokenizer
        self.tokenizerSpec = tokenizerSpec
    }

    /// Tokenizes `inputs` (files or directories, walked recursively in sorted order) into `output`. The shards are
    /// built in a sibling directory and moved into place only when everything succeeded.
    public func run(inputs: [String], output: String, progress: (String) -> Void = { _ in }) throws -> Summary {
        let start = DispatchTime.now()
        let files = try expand(inputs)
        let fm = FileManager.default
        let outputURL = URL(fileURLWithPath: output).standardizedFileURL
        let staging = outputURL.deletingLastPathComponent()
            .appendingPathComponent(".\(outputURL.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            var summary = Summary()
            var train = Split(prefix: "train"), validation = Split(prefix: "val")
            var documentIndex = 0
            // Files are read and encoded in groups so memory stays bounded on large corpora.
            var group: [String] = []
            var groupBytes = 0
            func flush() throws {
                let (documents, skipped, bytes) = try readDocuments(group)
                summary.skippedFiles += skipped
                summary.inputBytes += bytes
                let encoded = encodeAll(documents)
                for ids in encoded {
                    let isValidation = Self.isValidation(documentIndex, fraction: validationFraction)
                    documentIndex += 1
                    if isValidation {
                        try validation.append(ids, eos: tokenizer.eosTokenID, writer: self, directory: staging)
                    } else {
                        try train.append(ids, eos: tokenizer.eosTokenID, writer: self, directory: staging)
                    }
                }
                summary.documents += documents.count
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
                progress(String(format: "tokenize: %d documents, %.1f MB, %.2f MB/s", summary.documents,
                                Double(summary.inputBytes) / 1e6, Double(summary.inputBytes) / 1e6 / max(elapsed, 1e-9)))
                group = []
                groupBytes = 0
            }
            for file in files {
                group.append(file)
                groupBytes += (try? fm.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
                if groupBytes >= 64 << 20 { try flush() }
            }
            if !group.isEmpty { try flush() }
            guard train.tokens + train.buffer.count + validation.tokens + validation.buffer.count > 0 else {
                throw DataError("\(inputs.joined(separator: " ")): no documents with text (expected UTF-8 \(format == .text ? "text files" : "JSONL records with field '\(field)'"))")
            }
            try train.finish(eos: tokenizer.eosTokenID, writer: self, directory: staging)
            try validation.finish(eos: tokenizer.eosTokenID, writer: self, directory: staging)
            summary.trainTokens = train.tokens
            summary.validationTokens = validation.tokens
            let manifest = ShardManifest(tokenizer: tokenizerSpec, tokenizerSHA256: tokenizer.fingerprint,
                                         vocabSize: tokenizer.vocabSize, eosID: Int(tokenizer.eosTokenID),
                                         train: .init(files: train.files, tokens: train.tokens, documents: train.documents),
                                         validation: .init(files: validation.files, tokens: validation.tokens,
                                                           documents: validation.documents),
                                         inputs: inputs, skippedFiles: summary.skippedFiles)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(manifest).write(to: staging.appendingPathComponent("manifest.json"))
            if fm.fileExists(atPath: outputURL.path) { try fm.removeItem(at: outputURL) }
            try fm.moveItem(at: staging, to: outputURL)
            summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            return summary
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    static func isValidation(_ index: Int, fraction: Double) -> Bool {
        guard fraction > 0 else { return false }
        var z = UInt64(index) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < fraction
    }

    private func expand(_ inputs: [String]) throws -> [String] {
        let fm = FileManager.default
        var files: [String] = []
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw DataError("\(input): no such file or directory")
            }
            if isDirectory.boolValue {
                guard let walker = fm.enumerator(atPath: input) else { throw DataError("\(input): cannot list directory") }
                var found: [String] = []
                while let relative = walker.nextObject() as? String {
                    let full = (input as NSString).appendingPathComponent(relative)
                    var sub: ObjCBool = false
                    if fm.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue { found.append(full) }
                }
                files += found.sorted()
            } else {
                files.append(input)
            }
        }
        guard !files.isEmpty else { throw DataError("\(inputs.joined(separator: " ")): no input files") }
        return files
    }

    /// Reads documents from files; files that are not UTF-8 text (compiled bytecode, images) are skipped and reported.
    private func readDocuments(_ files: [String]) throws -> (documents: [String], skipped: [String], bytes: Int) {
        var documents: [String] = [], skipped: [String] = []
        var bytes = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw DataError("\(file): cannot read") }
            guard let text = String(data: data, encoding: .utf8), !text.contains("\u{0}") else {
                skipped.append(file)
                continue
            }
            bytes += data.count
            switch format {
            case .text:
                if !text.isEmpty { documents.append(text) }
            case .jsonl:
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                        throw DataError("\(file):\(number + 1): not a JSON object")
                    }
                    guard let value = object[field] as? String else {
                        throw DataError("\(file):\(number + 1): no string field '\(field)'")
                    }
                    if !value.isEmpty { documents.append(value) }
                }
            }
        }
        return (documents, skipped, bytes)
    }

    /// Worker threads for encoding: `SWIFTDRAFT_THREADS` when set (1 gives a single-threaded figure to compare with
    /// other tokenizers), else every core.
    public var threads: Int = CorpusTokenizer.defaultThreads

    /// `SWIFTDRAFT_THREADS` if it is a positive integer, else the number of active cores.
    public static var defaultThreads: Int {
        if let value = ProcessInfo.processInfo.environment["SWIFTDRAFT_THREADS"], let n = Int(value), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Encodes documents on `threads` workers; the order of the result is the order of the input.
    private func encodeAll(_ documents: [String]) -> [[Int32]] {
        var results = [[Int32]](repeating: [], count: documents.count)
        let workers = max(1, min(threads, documents.count))
        if workers == 1 {
            for i in documents.indices { results[i] = tokenizer.encode(documents[i]) }
            return results
        }
        // Workers take the next document from a shared counter rather than fixed ranges: file sizes vary by orders
        // of magnitude, and one large file must not leave the other workers idle.
        let next = DocumentCounter()
        results.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while let i = next.take(below: documents.count) {
                    out[i] = tokenizer.encode(documents[i])
                }
            }
        }
        return results
    }

    /// A lock-protected index shared by the encoding workers (one take per document, so the lock is never hot).
    private final class DocumentCounter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0

        func take(below limit: Int) -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard value < limit else { return nil }
            value += 1
            return value - 1
        }
    }

    /// Accumulates one split's tokens and writes a shard each time `shardTokens` are buffered.
    private struct Split {
        let prefix: String
        var buffer: [Int32] = []
        var bufferDocuments = 0
        var files: [String] = []
        var tokens = 0
        var documents = 0

        init(prefix: String) { self.prefix = prefix }

        mutating func append(_ ids: [Int32], eos: Int32, writer: CorpusTokenizer, directory: URL) throws {
            buffer += ids
            buffer.append(eos)
            bufferDocuments += 1
            if buffer.count >= writer.shardTokens { try write(writer: writer, directory: directory) }
        }

        mutating func finish(eos: Int32, writer: CorpusTokenizer, directory: URL) throws {
            if !buffer.isEmpty { try write(writer: writer, directory: directory) }
        }

        private mutating func write(writer: CorpusTokenizer, directory: URL) throws {
            let name = String(format: "%@-%06d.bin", prefix, files.count)
            try TokenShardWriter.write(buffer, documents: bufferDocuments, vocabSize: writer.tokenizer.vocabSize,
                                       fingerprint: writer.tokenizer.fingerprint, to: directory.appendingPathComponent(name))
            files.append(name)
            tokens += buffer.count
            documents += bufferDocuments
            buffer = []
            bufferDocuments = 0
        }
    }
}
