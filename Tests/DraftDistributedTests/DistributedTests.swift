import DraftDistributed
import Foundation
import XCTest

/// In-process checks: the world of one, the bucket plan, the failure hook. No MPI_Init here, on purpose: a test
/// process that initialised MPI could not start the mpirun jobs in MPIJobTests cleanly.
final class LocalCommunicatorTests: XCTestCase {
    func testLocalWorldIsOneRankAndCollectivesAreIdentity() throws {
        let comm = LocalCommunicator()
        XCTAssertEqual([comm.rank, comm.size, comm.localRank], [0, 1, 0])
        var values: [Float] = [1.5, -2, 3]
        try values.withUnsafeMutableBufferPointer { try comm.allReduceSum($0) }
        XCTAssertEqual(values, [1.5, -2, 3])
        XCTAssertEqual(try comm.allReduceSum([1, 2.5]), [1, 2.5])
        XCTAssertEqual(try comm.allReduceMax([-1, 4]), [-1, 4])
        var bytes: [UInt8] = [1, 2, 3]
        try comm.broadcast(&bytes, root: 0)
        XCTAssertEqual(bytes, [1, 2, 3])
        XCTAssertThrowsError(try comm.broadcast(&bytes, root: 1))
        try comm.barrier()
        try comm.shutdown()
    }

    func testMakeCommunicatorWithoutLauncherIsLocal() throws {
        for key in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"] where getenv(key) != nil {
            throw XCTSkip("test process runs under an MPI launcher (\(key) is set)")
        }
        let comm = try makeCommunicator()
        XCTAssertTrue(comm is LocalCommunicator)
        XCTAssertEqual(comm.size, 1)
    }

    func testBucketsArePlannedFromTheEndWithRaggedFirstOffsetBucket() throws {
        let count = 1_000
        let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { gradient.deallocate() }
        for i in 0..<count { gradient[i] = Float(i) }
        // 256 bytes = 64 floats: 15 full buckets from the end, then 40 elements at offset 0.
        let reducer = GradientReducer(communicator: LocalCommunicator(), gradient: gradient.baseAddress!, count: count,
                                      bucketBytes: 256, overlap: true)
        XCTAssertEqual(reducer.buckets.count, 16)
        XCTAssertEqual(reducer.buckets.first, 936..<1_000)
        XCTAssertEqual(reducer.buckets.last, 0..<40)
        for (a, b) in zip(reducer.buckets, reducer.buckets.dropFirst()) {
            XCTAssertEqual(b.upperBound, a.lowerBound, "buckets must tile the buffer, descending")
            XCTAssertEqual(a.count, 64)
        }

        // A world of one reduces nothing and leaves the gradient alone.
        for offset in stride(from: count, through: 0, by: -100) { try reducer.gradientsReady(from: offset) }
        try reducer.finish()
        XCTAssertEqual(reducer.lastStepStats.bytes, 0)
        XCTAssertEqual(reducer.lastStepStats.blockedSeconds, 0)
        for i in 0..<count { XCTAssertEqual(gradient[i], Float(i)) }
    }

    func testBucketPlanEdgeCases() {
        var one: Float = 0
        let tiny = GradientReducer(communicator: LocalCommunicator(), gradient: &one, count: 1, bucketBytes: 1,
                                   overlap: false)
        XCTAssertEqual(tiny.buckets, [0..<1], "a bucket smaller than one float still holds one")
        let exact = GradientReducer(communicator: LocalCommunicator(), gradient: &one, count: 0, bucketBytes: 64,
                                    overlap: true)
        XCTAssertEqual(exact.buckets, [])
    }

    /// Every common launcher's local-rank variable is read, Open MPI's first; a malformed one is bad input naming it.
    func testLocalRankComesFromAnyLauncher() throws {
        func rank(_ environment: [String: String]) throws -> Int? { try launcherLocalRank { environment[$0] } }
        XCTAssertNil(try rank([:]))
        XCTAssertEqual(try rank(["OMPI_COMM_WORLD_LOCAL_RANK": "3"]), 3)
        XCTAssertEqual(try rank(["MPI_LOCALRANKID": "2"]), 2)
        XCTAssertEqual(try rank(["SLURM_LOCALID": "5"]), 5)
        XCTAssertEqual(try rank(["PMI_LOCAL_RANK": "1"]), 1)
        XCTAssertEqual(try rank(["OMPI_COMM_WORLD_LOCAL_RANK": "0", "SLURM_LOCALID": "4"]), 0)
        XCTAssertThrowsError(try rank(["SLURM_LOCALID": "x"])) { error in
            XCTAssertTrue("\(error)".contains("SLURM_LOCALID"), "\(error)")
            XCTAssertEqual((error as? DistributedError)?.isBadInput, true)
        }
    }

    /// A communicator with only blocking collectives still offers the non-blocking all-reduce the reducer uses.
    func testLocalCommunicatorNonBlockingAllReduceIsComplete() throws {
        var values: [Float] = [1, 2, 3]
        let request = try values.withUnsafeMutableBufferPointer { try LocalCommunicator().startAllReduceSum($0) }
        XCTAssertTrue(try request.test())
        try request.wait()
        XCTAssertEqual(values, [1, 2, 3])
        XCTAssertFalse(LocalCommunicator().allowsProgressThread)
    }

    func testInjectedFailureReadsRankAndStep() {
        let key = "SWIFTDRAFT_TEST_FAIL_AT"
        let saved = getenv(key).map { String(cString: $0) }
        defer { if let saved { setenv(key, saved, 1) } else { unsetenv(key) } }

        unsetenv(key)
        XCTAssertFalse(injectedFailure(rank: 3, step: 5))
        setenv(key, "3:5", 1)
        XCTAssertTrue(injectedFailure(rank: 3, step: 5))
        XCTAssertFalse(injectedFailure(rank: 3, step: 4))
        XCTAssertFalse(injectedFailure(rank: 2, step: 5))
        setenv(key, "three:5", 1)
        XCTAssertFalse(injectedFailure(rank: 3, step: 5), "a malformed value is ignored (with a warning)")
    }
}

/// The checks that need several processes: each runs `mpirun ... mpi-selftest <command>` and reads its output.
final class MPIJobTests: XCTestCase {
    func testReducerMatchesReferenceBitsOn2Ranks() throws { try checkReducer(ranks: 2) }
    func testReducerMatchesReferenceBitsOn4Ranks() throws { try checkReducer(ranks: 4) }
    func testReducerMatchesReferenceBitsOn8RanksOversubscribed() throws { try checkReducer(ranks: 8) }

    /// Reducer with overlap on and off vs an exact reference (several buckets, ragged last one), rough values equal
    /// bitwise across modes and ranks, blocking all-reduce, scalar sum/max, broadcast from a non-zero root.
    private func checkReducer(ranks: Int) throws {
        let result = try Job.mpirun(ranks: ranks, ["check", "--elements", "1000003", "--bucket-bytes", "1048576"],
                                    timeout: 120)
        XCTAssertEqual(result.status, 0, result.transcript)
        XCTAssertTrue(result.stdout.contains("ragged: true"), result.transcript)
        XCTAssertTrue(result.stdout.contains("MPI-SELFTEST OK ranks=\(ranks)"), result.transcript)
    }

    /// Rank 3 of 4 hits the injected failure (SWIFTDRAFT_TEST_FAIL_AT=3:5) and throws while ranks 0-2 are blocked in
    /// the step's all-reduce (the reducer's MPI_Waitall): the error goes through abortOnError -> MPI_Abort, and the
    /// job ends within seconds.
    func testInjectedFailureOnRank3EndsWholeJobQuickly() throws {
        try checkInjectedFailure(collective: "reducer")
    }

    /// The same with the healthy ranks blocked in a plain MPI_Allreduce.
    func testInjectedFailureDuringBlockingAllReduce() throws {
        try checkInjectedFailure(collective: "blocking")
    }

    private func checkInjectedFailure(collective: String) throws {
        let result = try Job.mpirun(ranks: 4, ["fail", "--mode", "throw", "--collective", collective],
                                    environment: ["SWIFTDRAFT_TEST_FAIL_AT": "3:5"], timeout: 60)
        XCTAssertFalse(result.timedOut, "job hung: \(result.transcript)")
        XCTAssertNotEqual(result.status, 0, result.transcript)
        XCTAssertLessThan(result.seconds, 10, "abort took \(result.seconds) s: \(result.transcript)")
        XCTAssertTrue(result.stderr.contains("rank 3 of 4 aborting the job: injected failure at step 5"),
                      result.transcript)
    }

    /// A direct abort(exitCode:message:) from rank 3 while the others all-reduce with a reducer progress thread
    /// running (which may be inside MPI at that moment): non-zero exit, rank named.
    func testAbortFromOneRankEndsWholeJob() throws {
        let result = try Job.mpirun(ranks: 4, ["fail", "--mode", "abort", "--rank", "3", "--step", "2",
                                               "--progress-thread", "1"], timeout: 60)
        XCTAssertFalse(result.timedOut, "job hung: \(result.transcript)")
        XCTAssertNotEqual(result.status, 0, result.transcript)
        XCTAssertLessThan(result.seconds, 10, result.transcript)
        XCTAssertTrue(result.stderr.contains("rank 3 of 4 aborting the job"), result.transcript)
    }

    /// launch/train.sh with the self-test standing in for swiftdraft: ranks from the config, -n wins over it,
    /// oversubscription gives one BLAS thread per rank, every other argument reaches `train` untouched.
    func testTrainLauncherPassesThrough() throws {
        let config = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftdraft-launch-\(getpid()).yaml")
        try """
        run: {name: launch-test}
        # distributed: {world_size: 99}
        distributed:
          bucket_mb: 25
          world_size: 3   # three ranks
        """.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }

        let script = Job.repositoryRoot.appendingPathComponent("launch/train.sh").path
        let env = ["SWIFTDRAFT_BIN": try Job.selfTestBinary(), "OPENBLAS_NUM_THREADS": ""]
        let fromConfig = try Job.run(script, ["--config", config.path, "--max-steps", "2", "--set", "run.name=a b"],
                                     environment: env, timeout: 60)
        XCTAssertEqual(fromConfig.status, 0, fromConfig.transcript)
        XCTAssertTrue(fromConfig.stdout.contains("LAUNCH size=3 "), fromConfig.transcript)
        XCTAssertTrue(fromConfig.stdout.contains("args=--config \(config.path) --max-steps 2 --set run.name=a b"),
                      fromConfig.transcript)
        if ProcessInfo.processInfo.activeProcessorCount < 3 {
            XCTAssertTrue(fromConfig.stdout.contains("openblas=1 "), fromConfig.transcript)
        }

        let fromFlag = try Job.run(script, ["-n", "2", "--config", config.path], environment: env, timeout: 60)
        XCTAssertEqual(fromFlag.status, 0, fromFlag.transcript)
        XCTAssertTrue(fromFlag.stdout.contains("LAUNCH size=2 "), fromFlag.transcript)

        let debug = try Job.run(Job.repositoryRoot.appendingPathComponent("launch/debug.sh").path,
                                ["-n", "8", "--config", config.path], environment: env, timeout: 60)
        XCTAssertEqual(debug.status, 0, debug.transcript)
        XCTAssertTrue(debug.stdout.contains("LAUNCH size=1 "), debug.transcript)
        XCTAssertTrue(debug.stdout.contains("args=--debug --config \(config.path)"), debug.transcript)

        let noRanks = try Job.run(script, ["--max-steps", "2"], environment: env, timeout: 60)
        XCTAssertEqual(noRanks.status, 2, noRanks.transcript)
        XCTAssertTrue(noRanks.stderr.contains("no rank count"), noRanks.transcript)
    }
}

/// Runs child processes with a deadline, capturing output in files (pipes could fill and stall a chatty job).
enum Job {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        var timedOut: Bool
        var transcript: String { "exit \(status) after \(seconds) s\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The mpi-selftest built alongside this test bundle (same build directory), or $SWIFTDRAFT_MPI_SELFTEST.
    static func selfTestBinary() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["SWIFTDRAFT_MPI_SELFTEST"] { return explicit }
        var dirs: [URL] = []
        for path in [Bundle.main.executablePath, Bundle.main.bundlePath, CommandLine.arguments.first].compactMap({ $0 }) {
            dirs.append(URL(fileURLWithPath: path).deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles { dirs.append(bundle.bundleURL.deletingLastPathComponent()) }
        for scratch in [".build-mpi", ".build"] {
            dirs.append(repositoryRoot.appendingPathComponent("\(scratch)/release"))
        }
        for dir in dirs {
            let candidate = dir.appendingPathComponent("mpi-selftest").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        XCTFail("mpi-selftest not found next to the test bundle (looked in \(dirs.map(\.path))); "
                + "build it with `swift build -c release --product mpi-selftest` or set SWIFTDRAFT_MPI_SELFTEST")
        throw XCTSkip("mpi-selftest not built")
    }

    static func mpirun(ranks: Int, _ arguments: [String], environment: [String: String] = [:],
                       timeout: Double) throws -> Result {
        guard let mpirun = findExecutable("mpirun") else {
            throw XCTSkip("mpirun not found on PATH (Debian: apt-get install openmpi-bin)")
        }
        var flags = ["--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "-np", "\(ranks)"]
        if geteuid() == 0 { flags.insert("--allow-run-as-root", at: 0) }
        for key in environment.keys.sorted() { flags += ["-x", key] }
        return try run(mpirun, flags + [try selfTestBinary()] + arguments, environment: environment, timeout: timeout)
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String],
                    timeout: Double) throws -> Result {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftdraft-job-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = repositoryRoot
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment {
            if value.isEmpty { env[key] = nil } else { env[key] = value }
        }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        let start = Date()
        try process.run()
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                process.terminate()  // mpirun forwards SIGTERM to its ranks
                Thread.sleep(forTimeInterval: 2)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        try out.close()
        try err.close()
        return Result(status: process.terminationStatus,
                      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
                      seconds: seconds, timedOut: timedOut)
    }
}
