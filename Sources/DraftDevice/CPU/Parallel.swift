import CBLAS
import Dispatch
import Foundation

/// How many threads the CPU kernels split work over.
///
/// Under an oversubscribed `mpirun` the launcher sets `OPENBLAS_NUM_THREADS=1`, and each rank must then stay on one
/// core for its own kernels too, so the same variable (or `SWIFTDRAFT_THREADS`) bounds both.
func configuredThreadCount() -> Int {
    let environment = ProcessInfo.processInfo.environment
    for key in ["SWIFTDRAFT_THREADS", "OPENBLAS_NUM_THREADS"] {
        if let value = environment[key], let n = Int(value), n > 0 { return n }
    }
    return max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// Splits `0..<count` into at most `threads` contiguous chunks of at least `grain` items and runs them in parallel.
///
/// Chunk boundaries depend only on `count`, `threads` and `grain`, so reductions over chunks are deterministic. The
/// chunks run on the process's `WorkerTeam` (spinning workers: a few hundred nanoseconds to start, where a Dispatch
/// worker takes tens of microseconds to wake), or through `concurrentPerform` when the team is busy or too small.
@inline(__always)
func parallelChunks(_ count: Int, threads: Int, grain: Int, _ body: (Int, Range<Int>) -> Void) {
    let chunks = max(1, min(threads, count / max(grain, 1)))
    if chunks == 1 {
        body(0, 0..<count)
        return
    }
    func run(_ chunk: Int) { body(chunk, (count * chunk / chunks)..<(count * (chunk + 1) / chunks)) }
    let team = WorkerTeam.shared
    if chunks <= team.workers + 1 && team.run(chunks: chunks, run) { return }
    DispatchQueue.concurrentPerform(iterations: chunks, execute: run)
}

/// Runs `body` with OpenBLAS limited to one thread: used where the kernel itself parallelises over many small
/// matrix products (attention heads), so that BLAS threads do not fight the kernel's own.
func withSerialBLAS<R>(_ body: () throws -> R) rethrows -> R {
    let previous = openblas_get_num_threads()
    if previous == 1 { return try body() }
    openblas_set_num_threads(1)
    defer { openblas_set_num_threads(previous) }
    return try body()
}
