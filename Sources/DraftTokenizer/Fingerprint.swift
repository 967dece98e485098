import Foundation

/// The identity of a tokenizer by what it does, not by the bytes of the file it came from.
///
/// SHA-256 over a versioned, canonical serialisation of the loaded tokenizer: the vocabulary (token bytes in id order),
/// the merge table as the model applies it (id pairs with their priority), the symbol ids bytes and byte fallback
/// map to, the unknown id where it can be emitted, the added tokens with their ids and matching flags, BOS/EOS and the
/// vocabulary size, and the normalizer, pre-tokenizer and decoder as lists of elementary steps. A GGUF file and a
/// `tokenizer.json` of the same tokenizer therefore agree, a GGUF re-quantized to other tensor types keeps its
/// fingerprint, and only the tokenizer's metadata is ever hashed (never a multi-GB model file whole).
enum TokenizerFingerprint {
    /// Bump when the serialisation changes: every fingerprint changes with it.
    static let version = "swiftdraft-tokenizer-v2"

    static func compute(vocabSize: Int, eos: Int32, bos: Int32?, added: [AddedToken], normalizer: (any Normalizer)?,
                        preTokenizer: (any PreTokenizer)?, model: BPEModel, decoder: (any Decoder)?) -> String {
        var w = Writer()
        w.section(version)
        w.section("vocab")
        w.int(model.idToToken.count)
        for t in model.idToToken { w.bytes(t.tokenBytes) }
        w.section("size")
        w.int(vocabSize); w.int(Int(eos)); w.int(Int(bos ?? -1))

        w.section("added")
        // The matcher skips empty contents; the rest in (id, content) order, whatever order the file listed them.
        let sortedAdded = added.filter { !$0.content.isEmpty }.sorted {
            $0.id != $1.id ? $0.id < $1.id : $0.content.lexicographicallyPrecedes($1.content)
        }
        w.int(sortedAdded.count)
        for a in sortedAdded {
            w.int(Int(a.id)); w.bytes(a.content)
            w.int((a.lstrip ? 1 : 0) | (a.rstrip ? 2 : 0) | (a.singleWord ? 4 : 0))
        }

        w.section(model.initial == .bytes ? "model byte-level" : "model scalars")
        for id in model.byteIDs { w.int(Int(id)) }
        // The unknown id is emitted only for a symbol with neither a token nor a byte id; where every byte has one
        // (all byte-level vocabularies, SentencePiece with byte fallback) it cannot matter, whatever the file says.
        let unknownReachable = model.byteIDs.contains { $0 < 0 }
        w.int(unknownReachable ? Int(model.unknownID ?? -1) : -2)
        w.int(unknownReachable && model.fuseUnknown ? 1 : 0)
        w.int(model.wholeWords != nil ? 1 : 0)

        w.section("merges")
        // Priorities renumbered densely: only their order and ties change what the merge loop does.
        let merges = model.pairs.entries().sorted { ($0.rank, $0.left, $0.right) < ($1.rank, $1.left, $1.right) }
        w.int(merges.count)
        var dense = -1
        var last: Int32?
        for m in merges {
            if m.rank != last { dense += 1; last = m.rank }
            w.int(dense); w.int(Int(m.left)); w.int(Int(m.right)); w.int(Int(m.merged))
        }

        for (name, steps) in [("normalizer", normalizer?.canonicalSteps ?? []),
                              ("pre-tokenizer", preTokenizer?.canonicalSteps ?? []),
                              ("decoder", decoder?.canonicalSteps ?? [])] {
            w.section(name)
            w.int(steps.count)
            for s in steps { w.bytes(s.tokenBytes) }
        }
        return w.finish()
    }

    /// Length-prefixed fields streamed into SHA-256 through a small buffer, so no field can run into the next.
    private struct Writer {
        var hash = SHA256()
        var buffer = [UInt8]()

        init() { buffer.reserveCapacity(1 << 16) }

        mutating func flushIfFull() {
            if buffer.count >= 1 << 16 { hash.update(buffer[...]); buffer.removeAll(keepingCapacity: true) }
        }
        mutating func int(_ v: Int) {
            withUnsafeBytes(of: Int64(v).littleEndian) { buffer.append(contentsOf: $0) }
            flushIfFull()
        }
        mutating func bytes(_ b: [UInt8]) {
            int(b.count)
            buffer.append(contentsOf: b)
            flushIfFull()
        }
        mutating func section(_ name: String) { bytes(Array("\u{1}\(name)".utf8)) }

        mutating func finish() -> String {
            hash.update(buffer[...])
            return SHA256.hexString(hash.finalize())
        }
    }
}

