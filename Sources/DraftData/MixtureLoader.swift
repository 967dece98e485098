import Foundation

/// One stage of the schedule as the loader sees it: which sources to draw from, in what proportions.
public struct StageMixture: Sendable {
    public let name: String
    /// Weight per source name; normalised by the loader.
    public let weights: [String: Double]

    public init(name: String, weights: [String: Double]) {
        self.name = name
        self.weights = weights
    }
}

/// Where a global sample comes from: a source and a window of `seqLen + 1` tokens in its training shards.
public struct SampleReference: Equatable, Sendable {
    public let source: Int
    public let shard: Int
    public let start: Int

    public init(source: Int, shard: Int, start: Int) {
        self.source = source
        self.shard = shard
        self.start = start
    }
}

/// The loader's whole state: small enough to live in every checkpoint, and global (no rank in it), so a run resumed
/// on a different number of ranks continues the same sample order.
public struct LoaderCursor: Codable, Equatable, Sendable {
    /// Samples drawn in the current stage (drives the mixture's proportions).
    public var samplesInStage: Int = 0
    public var stage: Int = 0
    /// Windows drawn from each source so far, over all stages, in `MixtureLoader.sourceNames` order.
    public var drawsPerSource: [Int]

    public init(sources: Int) { drawsPerSource = Array(repeating: 0, count: sources) }

    /// Flattened for checkpoint storage.
    public var encoded: [Int64] { [Int64(stage), Int64(samplesInStage)] + drawsPerSource.map(Int64.init) }

    public init?(encoded: [Int64], sources: Int) {
        guard encoded.count == 2 + sources else { return nil }
        stage = Int(encoded[0])
        samplesInStage = Int(encoded[1])
        drawsPerSource = encoded[2...].map(Int.init)
    }
}

/// Draws training sequences in a global order that depends only on the seed and the global sample index.
///
/// Within a stage, the source of each sample is chosen by smooth weighted round-robin (the source furthest behind its
/// share goes next), which keeps every prefix of the stage within one sample of the configured proportions. Within a
/// source, the k-th draw takes window `permutation_epoch(k mod W)` of the source's `W` non-overlapping windows, where the
/// permutation is a keyed Feistel network over the window indices, re-keyed each epoch: every window is seen once per
/// epoch, in an order that needs no stored shuffle.
public final class MixtureLoader {
    public let sources: [DataSource]
    public var sourceNames: [String] { sources.map(\.name) }
    public let seqLen: Int
    public let seed: UInt64
    public private(set) var cursor: LoaderCursor
    private let windowPrefix: [[Int]]  // per source: cumulative window counts per shard
    private var stages: [[Double]] = []  // per stage, normalised weight per source
    /// The round-robin position for `cursor`: derived from it (rebuilt by replaying the stage's choices on restore).
    private var roundRobin: SmoothRoundRobin?
    private let teacherKValue: Int?

    public init(sources: [DataSource], stages: [StageMixture], seqLen: Int, seed: UInt64) throws {
        self.sources = sources
        self.seqLen = seqLen
        self.seed = seed
        cursor = LoaderCursor(sources: sources.count)
        let ks = Set(sources.compactMap { $0.teacher?.first?.k })
        guard ks.count <= 1 else {
            throw DataError("data.sources: sources with top-K logits must share K, got \(ks.sorted()) (\(sources.filter { $0.teacher != nil }.map(\.name).joined(separator: ", ")))")
        }
        teacherKValue = ks.first
        windowPrefix = sources.map { source in
            var prefix = [0]
            for shard in source.train { prefix.append(prefix.last! + max(0, (shard.tokenCount - 1) / seqLen)) }
            return prefix
        }
        for (i, source) in sources.enumerated() where windowPrefix[i].last! == 0 {
            throw DataError("data.sources.\(source.name): no training window of \(seqLen + 1) tokens")
        }
        for stage in stages {
            let total = stage.weights.values.reduce(0, +)
            guard total > 0 else { throw DataError("schedule.stages.\(stage.name).mixture: weights must sum to more than 0") }
            self.stages.append(Array(repeating: 0, count: sources.count))
            for (name, weight) in stage.weights {
                guard let index = sources.firstIndex(where: { $0.name == name }) else {
                    throw DataError("schedule.stages.\(stage.name).mixture.\(name): no such source in data.sources")
                }
                self.stages[self.stages.count - 1][index] = weight / total
            }
        }
    }

    /// Restores a cursor from a checkpoint.
    public func restore(_ cursor: LoaderCursor) throws {
        guard cursor.drawsPerSource.count == sources.count, cursor.stage < max(stages.count, 1) else {
            throw DataError("checkpoint data cursor (stage \(cursor.stage), \(cursor.drawsPerSource.count) sources) does not fit the config's \(stages.count) stages and \(sources.count) sources")
        }
        self.cursor = cursor
        roundRobin = nil
    }

    /// The next `count` samples of the global order in stage `stage` (a new stage restarts the proportions).
    public func nextSamples(_ count: Int, stage: Int) -> [SampleReference] {
        if stage != cursor.stage {
            cursor.stage = stage
            cursor.samplesInStage = 0
            roundRobin = nil
        }
        if roundRobin == nil {
            // Replaying the stage's choices so far is integer arithmetic, done once per restore or stage change.
            var replay = SmoothRoundRobin(weights: stages[stage])
            for _ in 0..<cursor.samplesInStage { _ = replay.next() }
            roundRobin = replay
        }
        var result: [SampleReference] = []
        result.reserveCapacity(count)
        for _ in 0..<count {
            let source = roundRobin!.next()
            let draw = cursor.drawsPerSource[source]
            cursor.drawsPerSource[source] += 1
            cursor.samplesInStage += 1
            result.append(window(source: source, draw: draw))
        }
        return result
    }

    /// Copies a sample's inputs (`seqLen` ids) and targets (the next `seqLen` ids) out of its shard. Targets at
    /// positions the source's loss mask marks as context only (a distill prompt) are -1, which the loss skips.
    public func fill(_ sample: SampleReference, tokens: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let source = sources[sample.source]
        let shard = source.train[sample.shard]
        shard.read(from: sample.start, count: seqLen, into: tokens)
        shard.read(from: sample.start + 1, count: seqLen, into: targets)
        if let masks = source.trainMasks {
            Self.applyMask(masks[sample.shard], from: sample.start + 1, count: seqLen, to: targets)
        }
    }

    /// K when any source has top-K (all that do must share K), else nil.
    public var teacherK: Int? { teacherKValue }

    /// Rows for the sample's targets (positions start+1 ..< start+1+seqLen), K per row; ids -1 for rows of sources
    /// without top-K and for masked rows.
    public func fillTeacher(_ sample: SampleReference, ids: UnsafeMutablePointer<Int32>, logprobs: UnsafeMutablePointer<Float>) {
        guard let k = teacherKValue else { return }
        guard let teacher = sources[sample.source].teacher else {
            ids.update(repeating: -1, count: seqLen * k)
            logprobs.update(repeating: 0, count: seqLen * k)
            return
        }
        teacher[sample.shard].read(from: sample.start + 1, count: seqLen, ids: ids, logprobs: logprobs)
    }

    /// Up to `maxSequences` fixed validation windows of a source (its held-out shards, in order); empty when the
    /// source has no validation split. Masked targets are -1, as in `fill`.
    public func validationSequences(source: Int, maxSequences: Int) -> [(tokens: [Int32], targets: [Int32])] {
        var result: [(tokens: [Int32], targets: [Int32])] = []
        let data = sources[source]
        for (s, shard) in data.validation.enumerated() {
            var start = 0
            while start + seqLen + 1 <= shard.tokenCount, result.count < maxSequences {
                var tokens = [Int32](repeating: 0, count: seqLen), targets = tokens
                tokens.withUnsafeMutableBufferPointer { shard.read(from: start, count: seqLen, into: $0.baseAddress!) }
                targets.withUnsafeMutableBufferPointer {
                    shard.read(from: start + 1, count: seqLen, into: $0.baseAddress!)
                    if let masks = data.validationMasks {
                        Self.applyMask(masks[s], from: start + 1, count: seqLen, to: $0.baseAddress!)
                    }
                }
                result.append((tokens, targets))
                start += seqLen
            }
        }
        return result
    }

    private static func applyMask(_ mask: LossMaskShard, from start: Int, count: Int, to targets: UnsafeMutablePointer<Int32>) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { bytes in
            mask.read(from: start, count: count, into: bytes.baseAddress!)
            for i in 0..<count where bytes[i] == 0 { targets[i] = -1 }
        }
    }

    private func window(source: Int, draw: Int) -> SampleReference {
        let prefix = windowPrefix[source]
        let windows = prefix.last!
        let epoch = draw / windows
        let key = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(source) &* 0xC2B2_AE3D_27D4_EB4F &+ UInt64(epoch)
        let index = permute(draw % windows, domain: windows, key: key)
        // Binary search for the shard holding window `index`.
        var lo = 0, hi = prefix.count - 1
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if prefix[mid] <= index { lo = mid } else { hi = mid }
        }
        return SampleReference(source: source, shard: lo, start: (index - prefix[lo]) * seqLen)
    }
}

/// Smooth weighted round-robin: each turn every source earns its weight, the richest is chosen and pays 1.
struct SmoothRoundRobin {
    let weights: [Double]
    var credit: [Double]

    init(weights: [Double]) {
        self.weights = weights
        credit = Array(repeating: 0, count: weights.count)
    }

    mutating func next() -> Int {
        var best = -1
        for i in weights.indices where weights[i] > 0 {
            credit[i] += weights[i]
            if best < 0 || credit[i] > credit[best] { best = i }
        }
        credit[best] -= 1
        return best
    }
}

/// A keyed bijection on `0..<domain`: a 4-round Feistel network on the smallest even bit width covering the domain,
/// cycle-walked until the value falls inside it.
func permute(_ value: Int, domain: Int, key: UInt64) -> Int {
    guard domain > 1 else { return 0 }
    var bits = 2
    while (1 << bits) < domain { bits += 2 }
    let half = bits / 2, mask = UInt64((1 << half) - 1)
    var x = UInt64(value)
    repeat {
        var left = x >> UInt64(half), right = x & mask
        for round in 0..<4 {
            var h = right &+ key &+ UInt64(round) &* 0x9E37_79B9_7F4A_7C15
            h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
            h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
            (left, right) = (right, left ^ (h & mask))
        }
        x = (left << UInt64(half)) | right
    } while x >= UInt64(domain)
    return Int(x)
}
