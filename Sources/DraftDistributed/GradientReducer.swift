import CMPI

/// Timing and volume of one step's gradient reduction (`GradientReducer.lastStepStats`).
public struct ReductionStats: Sendable, Equatable {
    /// Bytes of gradient summed over ranks this step (0 in a world of one).
    public var bytes: Int = 0
    /// Buckets reduced this step.
    public var buckets: Int = 0
    /// Buckets started from `gradientsReady` (during backward) rather than from `finish()`.
    public var bucketsStartedDuringBackward: Int = 0
    /// Whether the step ran with overlap.
    public var overlapped: Bool = false
    /// Seconds inside MPI calls (starting, testing and waiting on the bucket all-reduces), wherever they were made.
    public var mpiSeconds: Double = 0
    /// Seconds of those MPI calls made from `gradientsReady`: they sit on the backward's critical path.
    public var readySeconds: Double = 0
    /// Wall seconds blocked in `finish()`: the communication backward did not hide.
    public var blockedSeconds: Double = 0
    /// Seconds the same reduction takes without overlap: from `calibrate()` or the last step run without overlap;
    /// 0 while unknown.
    public var referenceSeconds: Double = 0
    /// Estimate of the all-reduce time hidden by overlap: `referenceSeconds - readySeconds - blockedSeconds`,
    /// never below 0; 0 without overlap or without a reference.
    public var hiddenSeconds: Double = 0

    public init() {}
}

/// Splits a flat fp32 gradient of `count` elements into contiguous buckets of at most `bucketBytes`, planned from the
/// END of the buffer backwards (backward produces gradients last-layer-first, i.e. high offsets become final first).
///
/// Every bucket is summed in place by its own `MPI_Iallreduce(MPI_SUM)`, started in bucket order on every rank,
/// with or without overlap; only *when* a bucket starts changes. So the result is bitwise the same with overlap on
/// and off (same buckets, same operation, same algorithm), and the same on every rank.
///
/// Use on the last micro-step of gradient accumulation: call `gradientsReady(from:)` from backward as layers finish
/// (offsets decreasing), then `finish()` before reading the gradient. Both are collective in effect: every rank must
/// call `finish()` for every step, even one it means to discard. The gradient memory belongs to the caller and must
/// outlive the reducer; it must not be written between a bucket's start and `finish()`.
/// With a world of one (LocalCommunicator) every call is a no-op.
public final class GradientReducer {
    /// The plan, in start order: `buckets[0]` ends at `count`, and the last one (possibly shorter) starts at 0.
    public let buckets: [Range<Int>]
    /// Whether buckets start during backward.
    public let overlap: Bool
    /// Timing of the last completed step.
    public private(set) var lastStepStats = ReductionStats()
    /// The non-overlapped reduction time used for `hiddenSeconds` (see `calibrate()`).
    public private(set) var referenceSeconds: Double = 0

    private let communicator: any Communicator
    private let mpi: MPICommunicator?
    private let gradient: UnsafeMutablePointer<Float>
    private let count: Int
    private var requests: [MPI_Request?]
    /// Buckets `0..<nextBucket` have been started this step.
    private var nextBucket = 0
    /// Buckets `0..<firstPending` are known to be complete.
    private var firstPending = 0
    private var current = ReductionStats()

    public init(communicator: any Communicator, gradient: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int,
                overlap: Bool) {
        self.communicator = communicator
        self.mpi = communicator as? MPICommunicator
        self.gradient = gradient
        self.count = max(0, count)
        self.overlap = overlap
        let perBucket = min(max(1, bucketBytes / MemoryLayout<Float>.stride), MPICommunicator.maxCountPerCall)
        self.buckets = GradientReducer.plan(count: max(0, count), bucketElements: perBucket)
        self.requests = Array(repeating: swd_mpi_request_null(), count: buckets.count)
    }

    static func plan(count: Int, bucketElements: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var upper = count
        while upper > 0 {
            let lower = max(0, upper - bucketElements)
            result.append(lower..<upper)
            upper = lower
        }
        return result
    }

    private var active: Bool { communicator.size > 1 && !buckets.isEmpty }

    /// Backward calls this as gradients become final: every element at offset >= `offset` is final.
    /// With overlap, starts MPI_Iallreduce (in place, MPI_SUM) on each bucket wholly inside [offset, count) not yet
    /// started, and calls MPI_Testall on pending ones to let MPI progress. Without overlap, does nothing.
    public func gradientsReady(from offset: Int) throws {
        guard overlap, active, let mpi else { return }
        current.overlapped = true
        let t0 = monotonicSeconds()
        // Buckets are started strictly in plan order, so every rank issues the same sequence of collectives
        // whatever offsets its backward reports.
        while nextBucket < buckets.count, buckets[nextBucket].lowerBound >= offset {
            try start(bucket: nextBucket, with: mpi)
            current.bucketsStartedDuringBackward += 1
        }
        if firstPending < nextBucket {
            let done = try requests.withUnsafeMutableBufferPointer {
                try mpi.testAll(UnsafeMutableBufferPointer(rebasing: $0[firstPending..<nextBucket]))
            }
            if done { firstPending = nextBucket }
        }
        let elapsed = monotonicSeconds() - t0
        current.mpiSeconds += elapsed
        current.readySeconds += elapsed
    }

    /// Reduces whatever is left (everything, without overlap), waits for all buckets.
    /// Without overlap every bucket's all-reduce is started here at once and then waited on: the same collectives
    /// as with overlap, which is what keeps the two modes bitwise identical.
    public func finish() throws {
        defer { resetStep() }
        guard active else {
            lastStepStats = ReductionStats()
            lastStepStats.referenceSeconds = referenceSeconds
            return
        }
        let t0 = monotonicSeconds()
        if let mpi {
            while nextBucket < buckets.count { try start(bucket: nextBucket, with: mpi) }
            try requests.withUnsafeMutableBufferPointer {
                try mpi.waitAll(UnsafeMutableBufferPointer(rebasing: $0[firstPending..<nextBucket]))
            }
        } else {
            // A non-MPI communicator has only blocking collectives; same buckets, same order.
            for bucket in buckets {
                try communicator.allReduceSum(UnsafeMutableBufferPointer(start: gradient + bucket.lowerBound,
                                                                         count: bucket.count))
            }
        }
        let blocked = monotonicSeconds() - t0
        current.mpiSeconds += blocked
        current.blockedSeconds = blocked
        current.bytes = count * MemoryLayout<Float>.stride
        current.buckets = buckets.count
        if !overlap { referenceSeconds = blocked }
        current.referenceSeconds = referenceSeconds
        if overlap, referenceSeconds > 0 {
            current.hiddenSeconds = max(0, referenceSeconds - current.readySeconds - blocked)
        }
        lastStepStats = current
    }

    /// Measures the non-overlapped reduction time that `hiddenSeconds` is estimated against: every bucket reduced in
    /// turn, blocking, on a scratch buffer the size of the largest bucket (the gradient is untouched). Collective:
    /// every rank must call it at the same point, outside a step. Keeps the fastest of `repeats` runs.
    public func calibrate(repeats: Int = 2) throws {
        guard active else { return }
        let largest = buckets.map(\.count).max() ?? 0
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { scratch.deallocate() }
        scratch.initialize(repeating: 0, count: largest)
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            try communicator.barrier()
            let t0 = monotonicSeconds()
            for bucket in buckets {
                if let mpi {
                    var request = try mpi.startAllReduceSum(scratch, count: bucket.count)
                    try withUnsafeMutablePointer(to: &request) {
                        try mpi.waitAll(UnsafeMutableBufferPointer(start: $0, count: 1))
                    }
                } else {
                    try communicator.allReduceSum(UnsafeMutableBufferPointer(start: scratch, count: bucket.count))
                }
            }
            best = min(best, monotonicSeconds() - t0)
        }
        referenceSeconds = best
    }

    private func start(bucket index: Int, with mpi: MPICommunicator) throws {
        let bucket = buckets[index]
        requests[index] = try mpi.startAllReduceSum(gradient + bucket.lowerBound, count: bucket.count)
        nextBucket = index + 1
    }

    private func resetStep() {
        for i in requests.indices { requests[i] = swd_mpi_request_null() }
        nextBucket = 0
        firstPending = 0
        current = ReductionStats()
    }
}
