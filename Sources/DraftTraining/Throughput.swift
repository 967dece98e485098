import DraftDevice
import Foundation

/// The device's single-precision matrix-product rate in GFLOP/s: the ceiling MFU is measured against.
///
/// A square 1024 product is large enough for OpenBLAS to reach its steady rate and short enough (about 10 ms at
/// 200 GFLOP/s) to run at every start; the best of five repeats is reported, as noise only ever slows a run.
public func measurePeakGFLOPs(device: any Device, size: Int = 1024, repeats: Int = 5) -> Double {
    guard let a = try? device.allocate(Float.self, count: size * size),
          let b = try? device.allocate(Float.self, count: size * size),
          let c = try? device.allocate(Float.self, count: size * size) else { return .nan }
    defer {
        device.free(a)
        device.free(b)
        device.free(c)
    }
    try? device.fill(a, count: size * size, value: 0.5)
    try? device.fill(b, count: size * size, value: 0.25)
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = now()
        try? device.gemm(transA: false, transB: false, m: size, n: size, k: size, alpha: 1, a: a, lda: size,
                         b: b, ldb: size, beta: 0, c: c, ldc: size)
        try? device.synchronize()
        best = min(best, now() - start)
    }
    return 2 * Double(size * size * size) / best / 1e9
}

/// Whether an MPI progress thread can help: it drives in-flight all-reduces while backward computes, which pays when a
/// core is idle (an accelerator computes) and only steals time when the ranks' compute threads already fill the cores.
/// `SWIFTDRAFT_MPI_PROGRESS_THREAD=1|0` overrides the choice.
func progressThreadHelps(device: any Device) -> Bool {
    if let forced = ProcessInfo.processInfo.environment["SWIFTDRAFT_MPI_PROGRESS_THREAD"] { return forced == "1" }
    let threads = device.hostComputeThreads
    guard threads > 0 else { return true }
    let localRanks = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
    return localRanks * threads < ProcessInfo.processInfo.activeProcessorCount
}
