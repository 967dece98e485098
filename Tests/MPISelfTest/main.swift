// mpi-selftest: the DraftDistributed checks that need several processes, run under mpirun by
// DraftDistributedTests (and by hand for the benchmark). Every rank runs the same command; rank 0 reports.
//
//   mpi-selftest check [--elements N] [--bucket-bytes B]   reducer bits vs reference, overlap on/off; scalars; broadcast
//   mpi-selftest fail  [--rank R] [--step S] [--mode throw|abort] [--collective reducer|blocking] [--progress-thread 0|1]
//                                                           rank R fails at step S while the others all-reduce
//   mpi-selftest bench [--mb M] [--bucket-mb B] [--layers L] [--compute-ms C] [--iters K]
//   mpi-selftest train ARGS...                               stand-in for `swiftdraft train` when testing launch/train.sh
import DraftDistributed
import Foundation

struct Options {
    var values: [String: String] = [:]
    var positional: [String] = []

    init(_ args: ArraySlice<String>) {
        var i = args.startIndex
        while i < args.endIndex {
            let arg = args[i]
            if arg.hasPrefix("--"), i + 1 < args.endIndex {
                values[String(arg.dropFirst(2))] = args[i + 1]
                i += 2
            } else {
                positional.append(arg)
                i += 1
            }
        }
    }

    func int(_ key: String, _ fallback: Int) -> Int { values[key].flatMap { Int($0) } ?? fallback }
    func double(_ key: String, _ fallback: Double) -> Double { values[key].flatMap { Double($0) } ?? fallback }
}

func say(_ comm: any Communicator, _ text: String) {
    if comm.rank == 0 {
        print(text)
        fflush(stdout)
    }
}

// MARK: - check

/// Values whose sums over up to 64 ranks are exact in fp32 (multiples of 1/256 below 2^12), so any reduction order
/// gives the same bits and the reference sum is exact.
@inline(__always)
func exactValue(rank: Int, index: Int) -> Float {
    let h = (index &* 2_654_435_761 &+ rank &* 40_503) & 0x7FFFF
    return Float(h - 0x40000) / 256
}

/// Arbitrary floats (full mantissas, mixed signs and magnitudes): here the sum depends on reduction order.
@inline(__always)
func roughValue(rank: Int, index: Int) -> Float {
    var x = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: rank &+ 1) &* 0xBF58_476D_1CE4_E5B9
    x ^= x >> 31
    x &*= 0x94D0_49BB_1331_11EB
    x ^= x >> 29
    let unit = Float(x >> 40) / Float(1 << 24)  // [0, 1)
    let scale = Float(1 << Int((x >> 8) & 7))     // 1 ... 128
    return (unit - 0.5) * scale * 1e-3
}

/// Runs one reducer step the way backward would: layers of `layerElements` finishing from the end of the buffer.
/// The layer size differs per rank on purpose: ranks report different offsets, yet must issue the same collectives.
func reduceLikeBackward(_ reducer: GradientReducer, count: Int, layerElements: Int) throws {
    var offset = count
    while offset > 0 {
        offset = max(0, offset - layerElements)
        try reducer.gradientsReady(from: offset)
    }
    try reducer.finish()
}

func runCheck(_ comm: any Communicator, _ options: Options) throws -> Int {
    let count = options.int("elements", 1_000_003)
    let bucketBytes = options.int("bucket-bytes", 1 << 20)
    var failures = 0
    func expect(_ ok: Bool, _ what: String) {
        if !ok {
            failures += 1
            FileHandle.standardError.write("rank \(comm.rank): FAILED \(what)\n".data(using: .utf8)!)
        }
    }

    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    let layer = 7_919 + 1_000 * comm.rank

    // Exact values: the reducer must give exactly the reference sum, with and without overlap, step after step.
    var reference = [Float](repeating: 0, count: count)
    for i in 0..<count {
        var sum: Float = 0
        for r in 0..<comm.size { sum += exactValue(rank: r, index: i) }
        reference[i] = sum
    }
    let modes: [(overlap: Bool, thread: Bool)] = [(true, false), (true, true), (false, false)]
    for (overlap, thread) in modes {
        let reducer = GradientReducer(communicator: comm, gradient: buffer.baseAddress!, count: count,
                                      bucketBytes: bucketBytes, overlap: overlap, progressThread: thread)
        expect(reducer.usesProgressThread == (thread && comm.size > 1), "progress thread \(thread) not honoured")
        if overlap && !thread {
            let last = reducer.buckets.last!.count
            say(comm, "plan: \(count) elements, \(reducer.buckets.count) buckets of \(reducer.buckets[0].count), "
                    + "last \(last) (ragged: \(last != reducer.buckets[0].count))")
        }
        for step in 0..<2 {
            for i in 0..<count { buffer[i] = exactValue(rank: comm.rank, index: i) }
            try reduceLikeBackward(reducer, count: count, layerElements: layer)
            var mismatches = 0
            for i in 0..<count where buffer[i].bitPattern != reference[i].bitPattern { mismatches += 1 }
            expect(mismatches == 0,
                   "exact sum overlap=\(overlap) thread=\(thread) step=\(step): \(mismatches) elements differ")
            let stats = reducer.lastStepStats
            expect(stats.bytes == count * 4 && stats.buckets == reducer.buckets.count,
                   "stats bytes/buckets overlap=\(overlap): \(stats)")
            if overlap {
                expect(stats.bucketsStartedDuringBackward == reducer.buckets.count,
                       "all buckets start during backward: \(stats.bucketsStartedDuringBackward)")
            }
        }
    }
    say(comm, "ok: exact reference sum, overlap on (with and without progress thread) and off, 2 steps each")

    // Rough values: overlap on and off must agree bit for bit, on every rank, and be close to a double reference.
    var results: [[Float]] = []
    for (overlap, thread) in modes {
        let reducer = GradientReducer(communicator: comm, gradient: buffer.baseAddress!, count: count,
                                      bucketBytes: bucketBytes, overlap: overlap, progressThread: thread)
        for i in 0..<count { buffer[i] = roughValue(rank: comm.rank, index: i) }
        try reduceLikeBackward(reducer, count: count, layerElements: layer)
        results.append(Array(buffer))
    }
    for k in 1..<modes.count {
        var differ = 0
        for i in 0..<count where results[0][i].bitPattern != results[k][i].bitPattern { differ += 1 }
        expect(differ == 0, "mode \(modes[0]) vs \(modes[k]): \(differ) elements differ in bits")
    }
    var fromRoot = results[0]
    try comm.broadcast(&fromRoot, root: 0)
    var crossRank = 0
    for i in 0..<count where fromRoot[i].bitPattern != results[0][i].bitPattern { crossRank += 1 }
    expect(crossRank == 0, "rank \(comm.rank) vs rank 0: \(crossRank) elements differ in bits")
    var worst: Double = 0
    for i in 0..<count {
        var exact: Double = 0, magnitude: Double = 0
        for r in 0..<comm.size {
            let x = Double(roughValue(rank: r, index: i))
            exact += x
            magnitude += abs(x)
        }
        // Error of a float sum in any order is bounded by (n-1) ulps of the sum of magnitudes; measured in those
        // units so cancellation near zero does not read as a failure.
        let err = abs(Double(results[0][i]) - exact) / (magnitude * Double(Float.ulpOfOne))
        worst = max(worst, err)
    }
    expect(worst <= Double(comm.size), "rough sum error \(worst) ulps of sum|x| exceeds \(comm.size)")
    say(comm, "ok: rough values, overlap on (both progress modes) == off bitwise, identical on all ranks, "
            + "max error vs fp64 \(String(format: "%.2f", worst)) ulps of sum|x|")

    // For the record: one MPI_Allreduce over the whole buffer may pick another algorithm (another summation order),
    // which is why the reducer never switches to it when overlap is off.
    for i in 0..<count { buffer[i] = roughValue(rank: comm.rank, index: i) }
    try comm.allReduceSum(buffer)
    var wholeBufferDiffers = 0
    for i in 0..<count where buffer[i].bitPattern != results[0][i].bitPattern { wholeBufferDiffers += 1 }
    say(comm, "info: one whole-buffer MPI_Allreduce differs from the bucketed sum in \(wholeBufferDiffers) of \(count) elements")

    // Blocking whole-buffer all-reduce.
    for i in 0..<count { buffer[i] = exactValue(rank: comm.rank, index: i) }
    try comm.allReduceSum(buffer)
    var blockingMismatch = 0
    for i in 0..<count where buffer[i].bitPattern != reference[i].bitPattern { blockingMismatch += 1 }
    expect(blockingMismatch == 0, "blocking allReduceSum: \(blockingMismatch) elements differ")

    // Scalars.
    let n = Double(comm.size)
    let sums = try comm.allReduceSum([Double(comm.rank), 1, 0.5 * Double(comm.rank + 1)])
    expect(sums == [n * (n - 1) / 2, n, 0.5 * n * (n + 1) / 2], "scalar sums \(sums)")
    let maxes = try comm.allReduceMax([Double(comm.rank), -Double(comm.rank)])
    expect(maxes == [n - 1, 0], "scalar max \(maxes)")
    say(comm, "ok: scalar sum \(sums) and max \(maxes)")

    // Broadcast raw bytes from the last rank (not 0, so the root argument is really used).
    let root = comm.size - 1
    var bytes = [UInt8](repeating: 0, count: 100_003)
    if comm.rank == root { for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) } }
    try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: root) }
    var badBytes = 0
    for i in bytes.indices where bytes[i] != UInt8(truncatingIfNeeded: i &* 31 &+ 7) { badBytes += 1 }
    expect(badBytes == 0, "broadcast from rank \(root): \(badBytes) bytes differ")
    do {
        try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: comm.size) }
        expect(false, "broadcast to an out-of-world root must throw")
    } catch {}
    try comm.barrier()
    say(comm, "ok: broadcast of \(bytes.count) bytes from rank \(root), barrier")

    let worstFailures = try comm.allReduceMax([Double(failures)])[0]
    return Int(worstFailures)
}

// MARK: - fail

struct InjectedFailure: Error, CustomStringConvertible {
    let rank: Int, step: Int
    var description: String { "injected failure at step \(step) (SWIFTDRAFT_TEST_FAIL_AT)" }
}

func runFail(_ comm: any Communicator, _ options: Options) throws {
    let failRank = options.int("rank", 3)
    let failStep = options.int("step", 5)
    let mode = options.values["mode"] ?? "throw"
    if mode == "throw", environmentFailAt() == nil {
        setenv("SWIFTDRAFT_TEST_FAIL_AT", "\(failRank):\(failStep)", 1)
    }
    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1 << 20)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 1)
    let reducer = GradientReducer(communicator: comm, gradient: buffer.baseAddress!, count: buffer.count,
                                  bucketBytes: 1 << 20, overlap: true,
                                  progressThread: options.int("progress-thread", 0) != 0)
    // Where the healthy ranks are stuck when the failing one leaves: a plain MPI_Allreduce or the reducer's Waitall.
    let blocking = (options.values["collective"] ?? "reducer") == "blocking"
    for step in 0..<1000 {
        // The trainer's shape: the hook throws, and the one top-level handler aborts the job.
        comm.abortOnError {
            if mode == "throw", injectedFailure(rank: comm.rank, step: step) {
                usleep(300_000)  // let the other ranks get well inside the collective first
                throw InjectedFailure(rank: comm.rank, step: step)
            }
            if mode == "abort", comm.rank == failRank, step == failStep {
                usleep(300_000)
                comm.abort(exitCode: 3, message: "requested abort at step \(step)")
            }
            if blocking {
                try comm.allReduceSum(buffer)
            } else {
                try reduceLikeBackward(reducer, count: buffer.count, layerElements: 50_000)
            }
        }
    }
    say(comm, "fail: no rank failed (is rank \(failRank) in the world?)")
}

func environmentFailAt() -> String? { ProcessInfo.processInfo.environment["SWIFTDRAFT_TEST_FAIL_AT"] }

// MARK: - bench

func runBench(_ comm: any Communicator, _ options: Options) throws {
    let megabytes = options.double("mb", 50)
    let count = Int(megabytes * 1_000_000) / 4
    let bucketBytes = Int(options.double("bucket-mb", 25) * 1_000_000)
    let layers = options.int("layers", 16)
    let computeMs = options.double("compute-ms", 20)
    let iters = options.int("iters", 10)
    let busy = (options.values["compute"] ?? "busy") == "busy"

    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 1)

    func timed(_ body: () throws -> Void) throws -> Double {
        try comm.barrier()
        let t0 = Date()
        try body()
        let local = Date().timeIntervalSince(t0)
        return try comm.allReduceMax([local])[0]  // a collective is as slow as its slowest rank
    }
    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    let bytes = Double(count * 4)
    let busFactor = 2 * Double(comm.size - 1) / Double(comm.size)
    say(comm, "bench: \(comm.size) ranks, \(Int(bytes)) bytes, buckets of \(bucketBytes) bytes, \(iters) iterations")

    _ = try timed { try comm.allReduceSum(buffer) }
    var blocking: [Double] = []
    for _ in 0..<iters { blocking.append(try timed { try comm.allReduceSum(buffer) }) }
    let tb = median(blocking)
    say(comm, String(format: "MPI_Allreduce (one call): %.1f ms, algbw %.2f GB/s, busbw %.2f GB/s",
                     tb * 1e3, bytes / tb / 1e9, busFactor * bytes / tb / 1e9))

    // Simulated backward: `layers` layers of `computeMs` each, finishing from the end of the buffer.
    let layerElements = (count + layers - 1) / layers
    func spin(seconds: Double, touching range: Range<Int>) {
        if !busy { usleep(useconds_t(seconds * 1e6)); return }
        // Compute that writes the layer's gradient, as backward does, until the time is up.
        let end = Date().addingTimeInterval(seconds)
        var scale: Float = 1
        repeat {
            scale *= 0.999_999
            for i in range { buffer[i] = buffer[i] * scale + 1e-7 }
        } while Date() < end
    }
    func backward(_ reducer: GradientReducer?) throws {
        var offset = count
        while offset > 0 {
            let lower = max(0, offset - layerElements)
            spin(seconds: computeMs / 1e3, touching: lower..<min(lower + 4096, offset))
            offset = lower
            try reducer?.gradientsReady(from: offset)
        }
        try reducer?.finish()
    }
    // Modes interleaved iteration by iteration, so drifting load from other processes hits each one alike.
    let modes: [(name: String, overlap: Bool, thread: Bool)] = [
        ("no overlap", false, false), ("overlap (Testall only)", true, false), ("overlap+progress thread", true, true)]
    let reducers = modes.map {
        GradientReducer(communicator: comm, gradient: buffer.baseAddress!, count: count, bucketBytes: bucketBytes,
                        overlap: $0.overlap, progressThread: $0.thread)
    }
    for reducer in reducers {
        try reducer.calibrate()
        try backward(reducer)
    }
    var computeTimes: [Double] = []
    var steps = [[Double]](repeating: [], count: modes.count)
    var blocked = steps, hidden = steps, inMPI = steps
    for _ in 0..<iters {
        computeTimes.append(try timed { try backward(nil) })
        for (k, reducer) in reducers.enumerated() {
            steps[k].append(try timed { try backward(reducer) })
            blocked[k].append(reducer.lastStepStats.blockedSeconds)
            hidden[k].append(reducer.lastStepStats.hiddenSeconds)
            inMPI[k].append(reducer.lastStepStats.mpiSeconds)
        }
    }
    let computeOnly = median(computeTimes)
    let arTime = median(blocked[0])
    var report: [String] = [String(format: "compute alone (%d layers x %.0f ms, %@): %.1f ms", layers, computeMs,
                                   busy ? "busy" : "sleep", computeOnly * 1e3)]
    for (k, mode) in modes.enumerated() {
        let step = median(steps[k])
        report.append(String(format: "%@: step %.1f ms, blocked in finish %.1f ms, caller in MPI %.1f ms, "
                             + "reducer's hidden estimate %.1f ms (reference %.1f ms)",
                             mode.name, step * 1e3, median(blocked[k]) * 1e3, median(inMPI[k]) * 1e3,
                             median(hidden[k]) * 1e3, reducers[k].referenceSeconds * 1e3))
        if mode.overlap {
            let exposed = step - computeOnly
            let hiddenFraction = arTime > 0 ? max(0, min(1, 1 - exposed / arTime)) : 0
            report.append(String(format: "  -> all-reduce alone %.1f ms; step grows by %.1f ms over compute: "
                                 + "%.0f%% of the all-reduce hidden", arTime * 1e3, exposed * 1e3,
                                 hiddenFraction * 100))
        }
    }
    for line in report { say(comm, line) }
}

// MARK: - train (launcher stand-in)

func runTrainStandIn(_ comm: any Communicator, _ args: ArraySlice<String>) throws {
    let env = ProcessInfo.processInfo.environment
    let threads = env["OPENBLAS_NUM_THREADS"] ?? "unset"
    let sizes = try comm.allReduceMax([Double(comm.size)])
    say(comm, "LAUNCH size=\(Int(sizes[0])) openblas=\(threads) args=\(args.joined(separator: " "))")
}

// MARK: - main

let arguments = CommandLine.arguments
let command = arguments.count > 1 ? arguments[1] : "check"
let communicator: any Communicator
do {
    communicator = try makeCommunicator()
} catch {
    FileHandle.standardError.write("mpi-selftest: \(error)\n".data(using: .utf8)!)
    exit(1)
}
let options = Options(arguments.dropFirst(2))
var exitCode: Int32 = 0
communicator.abortOnError {
    switch command {
    case "check":
        let failures = try runCheck(communicator, options)
        say(communicator, failures == 0 ? "MPI-SELFTEST OK ranks=\(communicator.size)"
                                        : "MPI-SELFTEST FAILED ranks=\(communicator.size)")
        exitCode = failures == 0 ? 0 : 1
    case "fail": try runFail(communicator, options)
    case "bench": try runBench(communicator, options)
    case "train": try runTrainStandIn(communicator, arguments.dropFirst(2))
    default:
        communicator.abort(exitCode: 2, message: "unknown command \(command); use check, fail, bench or train")
    }
    try communicator.shutdown()
}
exit(exitCode)
