import Dispatch
import Foundation
import Synchronization

/// Persistent worker threads for `parallelChunks`, which spin for a short while between jobs and then sleep.
///
/// Why not `DispatchQueue.concurrentPerform`: a batch-1 decode step of SmolLM2 is about 210 products of 30-120 us
/// each, and waking a sleeping Dispatch worker costs tens of microseconds per call, so on 2 threads the layers' products
/// took longer than on one (`quant-bench`: 15.0 ms against 12.4 ms per step). A worker that is still spinning when the
/// next job is published starts it within a few hundred nanoseconds. While it spins it yields its core to any other
/// runnable thread (OpenBLAS's, another process's), so an idle team costs little beside other work, and after
/// `spinNanoseconds` without work it sleeps on a semaphore until a job needs it.
///
/// A job is at most `workers + 1` chunks; chunk 0 runs on the calling thread and chunk `i` on worker `i - 1`, so the
/// assignment is static and a chunk runs exactly once. The job's generation and chunk count share one atomic word, and
/// the job's closure sits in one of two slots by the generation's parity: a worker that takes part in job `g` reads
/// slot `g & 1` only after loading that word, and the caller returns (so the slot can be reused by job `g + 2`) only
/// after every worker of job `g` has reported it done. One job runs at a time: a call made while the team is busy
/// (a nested call from a chunk, or another thread's) goes to `concurrentPerform` instead.
final class WorkerTeam: @unchecked Sendable {
    /// The process's team: one worker fewer than the configured thread count (the caller is the other thread).
    static let shared = WorkerTeam(workers: max(0, configuredThreadCount() - 1))

    let workers: Int
    /// How long an idle worker keeps looking for the next job before it sleeps.
    let spinNanoseconds: UInt64

    /// `generation << 8 | chunks` of the latest job.
    private let state = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Per worker: the last generation it finished (atomics need stable addresses, hence not arrays).
    private let finished: UnsafeMutablePointer<Atomic<Int>>
    /// Per worker: set while it sleeps (or is about to), so the caller knows to signal it.
    private let sleeping: UnsafeMutablePointer<Atomic<Bool>>
    private let wakeups: [DispatchSemaphore]
    /// The two job slots (by generation parity): the chunk body of the job.
    private let slots: UnsafeMutablePointer<((Int) -> Void)?>

    init(workers: Int, spinNanoseconds: UInt64 = 100_000) {
        precondition(workers < 255, "a job's chunk count must fit in 8 bits")
        self.workers = workers
        self.spinNanoseconds = spinNanoseconds
        finished = .allocate(capacity: max(workers, 1))
        sleeping = .allocate(capacity: max(workers, 1))
        for index in 0..<workers {
            (finished + index).initialize(to: Atomic<Int>(0))
            (sleeping + index).initialize(to: Atomic<Bool>(false))
        }
        wakeups = (0..<workers).map { _ in DispatchSemaphore(value: 0) }
        slots = .allocate(capacity: 2)
        slots.initialize(repeating: nil, count: 2)
        for index in 0..<workers {
            let thread = Thread { [unowned(unsafe) self] in self.workerLoop(index) }
            // Chunk bodies keep small scratch (a row, a few vectors) on the stack.
            thread.stackSize = 8 << 20
            thread.name = "swiftdraft-worker-\(index)"
            thread.start()
        }
    }

    /// Runs `body(chunk)` for every chunk in `0..<chunks` (at most `workers + 1`) and returns when all are done;
    /// false (and nothing run) when the team is busy with another job.
    func run(chunks: Int, _ body: (Int) -> Void) -> Bool {
        precondition(chunks >= 1 && chunks <= workers + 1)
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            let generation = (state.load(ordering: .relaxed) >> 8) + 1
            let slot = slots + (generation & 1)
            slot.pointee = body
            state.store(generation << 8 | chunks, ordering: .sequentiallyConsistent)
            for worker in 0..<(chunks - 1)
            where (sleeping + worker).pointee.exchange(false, ordering: .sequentiallyConsistent) {
                wakeups[worker].signal()
            }
            body(0)
            for worker in 0..<(chunks - 1) {
                while (finished + worker).pointee.load(ordering: .acquiring) != generation { spinPause() }
            }
            slot.pointee = nil
        }
        return true
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        while true {
            var current = state.load(ordering: .acquiring)
            if current >> 8 == seen {
                let start = DispatchTime.now().uptimeNanoseconds
                var spins = 0
                while current >> 8 == seen {
                    spins += 1
                    if spins & 63 == 0 && DispatchTime.now().uptimeNanoseconds - start > spinNanoseconds {
                        (sleeping + index).pointee.store(true, ordering: .sequentiallyConsistent)
                        if state.load(ordering: .sequentiallyConsistent) >> 8 == seen {
                            wakeups[index].wait()
                        }
                        // A wake-up left over from a job seen while about to sleep only costs one more look.
                        (sleeping + index).pointee.store(false, ordering: .relaxed)
                        spins = 0
                    } else {
                        spinPause()
                    }
                    current = state.load(ordering: .acquiring)
                }
            }
            let generation = current >> 8, chunks = current & 0xFF
            seen = generation
            if index + 1 < chunks {
                slots[generation & 1]!(index + 1)
                (finished + index).pointee.store(generation, ordering: .releasing)
            }
        }
    }
}

/// Gives the core to another runnable thread, if there is one, while a spinning thread waits.
@inline(__always)
private func spinPause() {
    sched_yield()
}
