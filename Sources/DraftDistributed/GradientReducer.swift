#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// Seconds the calling thread spent inside MPI calls (starting, testing and waiting on the bucket all-reduces).
    public var mpiSeconds: Double = 0
    /// Seconds of those MPI calls made from `gradientsReady`: they sit on the backward's critical path.
    public var readySeconds: Double = 0
    /// Seconds the progress thread spent testing requests (off the critical path; 0 without one).
    public var progressThreadSeconds: Double = 0
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
/// Every bucket is summed in place by its own non-blocking all-reduce (`Communicator.startAllReduceSum`, under MPI
/// `MPI_Iallreduce(MPI_SUM)`), started in bucket order on every rank, with or without overlap; only *when* a bucket
/// starts changes. So the result is bitwise the same with overlap on and off (same buckets, same operation, same
/// algorithm), and the same on every rank.
///
/// Use on the last micro-step of gradient accumulation: call `gradientsReady(from:)` from backward as layers finish
/// (offsets decreasing), then `finish()` before reading the gradient. Both are collective in effect: every rank must
/// call `finish()` for every step, even one it means to discard. The gradient memory belongs to the caller and must
/// outlive the reducer; it must not be written between a bucket's start and `finish()`.
/// With a world of one (LocalCommunicator) every call is a no-op.
///
/// Progress: Open MPI moves a non-blocking collective forward only inside MPI calls. Without a progress thread that
/// happens in `gradientsReady` (testing the pending requests), so the copy and sum run on the caller's thread between
/// its compute. With `progressThread: true` a helper thread tests them every `progressInterval` while buckets are in
/// flight, which hides the all-reduce when the compute leaves a core idle (an accelerator doing backward); when
/// compute already fills every core it only competes for them.
public final class GradientReducer {
    /// The plan, in start order: `buckets[0]` ends at `count`, and the last one (possibly shorter) starts at 0.
    public let buckets: [Range<Int>]
    /// Whether buckets start during backward.
    public let overlap: Bool
    /// Whether a progress thread drives in-flight buckets (asked for, overlap on, more than one rank, the
    /// communicator allows it).
    public let usesProgressThread: Bool
    /// Timing of the last completed step.
    public private(set) var lastStepStats = ReductionStats()
    /// The non-overlapped reduction time used for `hiddenSeconds` (see `calibrate()`).
    public private(set) var referenceSeconds: Double = 0

    private let communicator: any Communicator
    private let gradient: UnsafeMutablePointer<Float>
    private let count: Int
    private let state: InFlight
    private var progress: ProgressThread?
    private var current = ReductionStats()

    public init(communicator: any Communicator, gradient: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int,
                overlap: Bool, progressThread: Bool = false, progressInterval: Double = 100e-6) {
        self.communicator = communicator
        self.gradient = gradient
        self.count = max(0, count)
        self.overlap = overlap
        let perBucket = min(max(1, bucketBytes / MemoryLayout<Float>.stride), maxElementsPerReduction)
        self.buckets = GradientReducer.plan(count: max(0, count), bucketElements: perBucket)
        self.state = InFlight(buckets: buckets.count)
        let active = communicator.size > 1 && !buckets.isEmpty
        if progressThread, overlap, active, communicator.allowsProgressThread {
            self.progress = ProgressThread(state: state, interval: progressInterval)
            self.usesProgressThread = progress != nil
        } else {
            self.usesProgressThread = false
        }
    }

    deinit {
        progress?.stop()
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
    /// With overlap, starts the all-reduce (in place, sum) of each bucket wholly inside [offset, count) not yet
    /// started, and tests pending ones to let the communicator progress. Without overlap, does nothing.
    public func gradientsReady(from offset: Int) throws {
        guard overlap, active else { return }
        current.overlapped = true
        let t0 = monotonicSeconds()
        var started = false
        do {
            state.lock.lock()
            defer { state.lock.unlock() }
            try state.rethrowBackgroundError()
            // Buckets are started strictly in plan order, so every rank issues the same sequence of collectives
            // whatever offsets its backward reports.
            while state.nextBucket < buckets.count, buckets[state.nextBucket].lowerBound >= offset {
                try start(bucket: state.nextBucket)
                current.bucketsStartedDuringBackward += 1
                started = true
            }
            // With a progress thread the caller leaves testing to it: a test may run a whole bucket's copy and sum.
            if progress == nil { try state.testPending() }
        }
        if started { progress?.wake() }
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
        do {
            state.lock.lock()
            defer { state.lock.unlock() }
            try state.rethrowBackgroundError()
            while state.nextBucket < buckets.count { try start(bucket: state.nextBucket) }
            try state.waitPending()
        }
        let blocked = monotonicSeconds() - t0
        current.mpiSeconds += blocked
        current.blockedSeconds = blocked
        current.progressThreadSeconds = state.backgroundSeconds
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
    public func calibrate(repeats: Int = 3) throws {
        guard active else { return }
        let largest = buckets.map(\.count).max() ?? 0
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: largest)
        defer { scratch.deallocate() }
        scratch.initialize(repeating: 0)
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            try communicator.barrier()
            let t0 = monotonicSeconds()
            for bucket in buckets {
                try communicator.startAllReduceSum(UnsafeMutableBufferPointer(rebasing: scratch[0..<bucket.count])).wait()
            }
            best = min(best, monotonicSeconds() - t0)
        }
        referenceSeconds = best
    }

    /// Caller holds `state.lock`.
    private func start(bucket index: Int) throws {
        let bucket = buckets[index]
        state.requests.append(try communicator.startAllReduceSum(
            UnsafeMutableBufferPointer(start: gradient + bucket.lowerBound, count: bucket.count)))
        state.nextBucket = index + 1
    }

    private func resetStep() {
        state.lock.lock()
        defer { state.lock.unlock() }
        state.reset()
        current = ReductionStats()
    }
}

/// The buckets of the step in flight. Shared by the reducer and its progress thread; every access holds `lock`.
final class InFlight {
    let lock = RecursiveLock()
    /// The requests of buckets `0..<nextBucket`, in start order.
    var requests: [any AllReduceRequest] = []
    /// Buckets `0..<nextBucket` have been started this step.
    var nextBucket = 0
    /// Buckets `0..<firstPending` are known to be complete.
    var firstPending = 0
    var backgroundSeconds: Double = 0
    var backgroundError: Error?

    init(buckets: Int) {
        requests.reserveCapacity(buckets)
    }

    var hasPending: Bool { firstPending < nextBucket }

    /// Tests the oldest pending requests; each test lets the communicator progress them all, and the ones found
    /// complete are skipped from then on.
    func testPending() throws {
        while hasPending, try requests[firstPending].test() { firstPending += 1 }
    }

    func waitPending() throws {
        while hasPending {
            try requests[firstPending].wait()
            firstPending += 1
        }
    }

    func rethrowBackgroundError() throws {
        if let error = backgroundError {
            backgroundError = nil
            throw error
        }
    }

    func reset() {
        requests.removeAll(keepingCapacity: true)
        nextBucket = 0
        firstPending = 0
        backgroundSeconds = 0
    }
}

/// Tests the in-flight buckets every `interval` seconds while there are any; sleeps on a condition variable
/// otherwise. A communicator error is parked in `InFlight.backgroundError` for the caller's thread to throw.
final class ProgressThread {
    private let state: InFlight
    private let interval: Double
    private var thread = pthread_t()
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Guarded by `mutex`.
    private var workPosted = false
    private var stopping = false

    init?(state: InFlight, interval: Double) {
        self.state = state
        self.interval = max(0, interval)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        // The thread holds the object until stop() joins it.
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Glibc)
        let created = pthread_create(&thread, nil, { raw in
            Unmanaged<ProgressThread>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        #else
        let created = pthread_create(&thread, nil, { raw in
            Unmanaged<ProgressThread>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        #endif
        if created != 0 {
            Unmanaged<ProgressThread>.fromOpaque(context).release()
            return nil
        }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func wake() {
        pthread_mutex_lock(mutex)
        workPosted = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        pthread_join(thread, nil)
    }

    private func run() {
        while true {
            pthread_mutex_lock(mutex)
            while !workPosted && !stopping { pthread_cond_wait(condition, mutex) }
            workPosted = false
            let done = stopping
            pthread_mutex_unlock(mutex)
            if done { return }
            // Poll until nothing is in flight; a bucket started meanwhile is seen on the next pass.
            while true {
                state.lock.lock()
                var more = false
                if state.backgroundError == nil, state.hasPending {
                    let t0 = monotonicSeconds()
                    do { try state.testPending() } catch { state.backgroundError = error }
                    state.backgroundSeconds += monotonicSeconds() - t0
                    more = state.hasPending && state.backgroundError == nil
                }
                state.lock.unlock()
                if !more { break }
                if interval > 0 { usleep(useconds_t(interval * 1e6)) } else { sched_yield() }
            }
        }
    }
}
