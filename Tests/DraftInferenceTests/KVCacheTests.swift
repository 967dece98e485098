import DraftDevice
import DraftInference
import DraftModel
import XCTest

/// The cached incremental forward against full recomputation: the training forward (PyTorch-verified) and the
/// engine over the whole sequence with an empty cache, for a batch of sequences of different lengths.
final class KVCacheTests: XCTestCase {
    func testCachedDecodeMatchesFullRecomputationOnCPU() throws {
        try checkCachedDecode(device: CPUDevice(threads: 2))
    }

    func testCachedDecodeMatchesFullRecomputationOnHPUStub() throws {
        try checkCachedDecode(device: try HPUDevice(pluginPath: try builtStubPath(), module: 0))
    }

    /// Rollback: trimming a slot and decoding other tokens gives the logits of the new sequence.
    func testTrimThenDecodeMatchesTheNewSequence() throws {
        let device = CPUDevice(threads: 2)
        let model = try makeTinyDraft(device: device)
        let engine = try engine(for: model)
        let cache = try KVCache(config: engine.config, device: device, slotCount: 2)
        var rng = SplitMix64(seed: 3)
        let first = (0..<12).map { _ in Int32(rng.next() % 97) }
        var second = first
        for i in 8..<12 { second[i] = Int32((Int(first[i]) + 5) % 97) }
        _ = try engine.forward([SequenceChunk(slot: 1, tokens: first, start: 0)], cache: cache, select: .lastRow)
        try cache.trim(slot: 1, to: 8)
        XCTAssertEqual(cache.lengths[1], 8)
        let out = try engine.forward([SequenceChunk(slot: 1, tokens: Array(second[8...]), start: 8)], cache: cache,
                                     select: .allRows)
        let cached = (0..<4).flatMap { Array(out.row($0)) }
        let full = try model.logits(tokens: second, batch: 1, seqLen: 12)
        let reference = Array(full[(8 * 97)...])
        XCTAssertLessThanOrEqual(relativeDifference(cached, reference), 1e-5)
        XCTAssertThrowsError(try cache.trim(slot: 1, to: 13))
    }

    func testForwardRefusesASequenceBeyondTheCache() throws {
        let device = CPUDevice(threads: 1)
        let engine = try engine(for: try makeTinyDraft(device: device))
        let cache = try KVCache(config: engine.config, device: device, slotCount: 1, capacity: 10)
        XCTAssertThrowsError(try engine.forward([SequenceChunk(slot: 0, tokens: [Int32](repeating: 1, count: 11),
                                                               start: 0)], cache: cache, select: .lastRow)) { error in
            XCTAssertTrue("\(error)".contains("longer than the context of 10"), "\(error)")
        }
        XCTAssertThrowsError(try engine.forward([SequenceChunk(slot: 0, tokens: [1], start: 3)], cache: cache,
                                                select: .lastRow))
        XCTAssertThrowsError(try engine.forward([SequenceChunk(slot: 0, tokens: [97], start: 0)], cache: cache,
                                                select: .lastRow))
    }

    private func checkCachedDecode(device: any Device) throws {
        let model = try makeTinyDraft(device: device)
        let vocab = model.config.vocabSize
        var rng = SplitMix64(seed: 11)
        let lengths = [13, 7, 22]
        let prefixes = [5, 3, 9]
        let sequences = lengths.map { n in (0..<n).map { _ in Int32(rng.next() % UInt64(vocab)) } }
        let references = try sequences.map { try model.logits(tokens: $0, batch: 1, seqLen: $0.count) }

        // Full recomputation through the engine: each sequence alone, empty cache, all rows.
        let whole = try engine(for: model)
        for (s, tokens) in sequences.enumerated() {
            let cache = try KVCache(config: whole.config, device: device, slotCount: 1)
            let out = try whole.forward([SequenceChunk(slot: 0, tokens: tokens, start: 0)], cache: cache,
                                        select: .allRows)
            let logits = (0..<tokens.count).flatMap { Array(out.row($0)) }
            let difference = relativeDifference(logits, references[s])
            XCTAssertLessThanOrEqual(difference, 1e-5, "engine without cache, sequence \(s)")
        }

        // Incremental: the three prefixes in one prefill, then steps of one or two tokens per sequence, all in one
        // batch while each has tokens left; passes of 7 rows and head products of 3 rows exercise the splitting.
        for (maxRows, headRows) in [(256, 64), (7, 3)] {
            let incremental = try engine(for: model, maxRows: maxRows, headRows: headRows)
            let cache = try KVCache(config: incremental.config, device: device, slotCount: 4)
            let slotOf = [2, 0, 3]  // not the sequence index, so slot addressing is tested too
            var produced = [[Float]](repeating: [], count: sequences.count)
            var done = [Int](repeating: 0, count: sequences.count)
            var step = 0
            while done != lengths {
                var chunks: [SequenceChunk] = []
                var owners: [Int] = []
                for s in sequences.indices where done[s] < lengths[s] {
                    let take = done[s] == 0 ? prefixes[s] : min(lengths[s] - done[s], 1 + (step + s) % 2)
                    chunks.append(SequenceChunk(slot: slotOf[s], tokens: Array(sequences[s][done[s]..<(done[s] + take)]),
                                                start: done[s]))
                    owners.append(s)
                    done[s] += take
                }
                let out = try incremental.forward(chunks, cache: cache, select: .allRows)
                for (c, s) in owners.enumerated() {
                    for r in 0..<chunks[c].tokens.count { produced[s] += Array(out.row(out.firstRow[c] + r)) }
                }
                step += 1
            }
            for s in sequences.indices {
                XCTAssertEqual(cache.lengths[slotOf[s]], lengths[s])
                let difference = relativeDifference(produced[s], references[s])
                print("cached decode on \(device.name), sequence \(s) (\(lengths[s]) tokens), passes of \(maxRows): relative difference \(difference)")
                XCTAssertLessThanOrEqual(difference, 1e-5, "cached decode, sequence \(s), passes of \(maxRows)")
            }
        }
    }
}
