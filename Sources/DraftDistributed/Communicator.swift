// The collective operations a data-parallel trainer needs, behind one protocol so the trainer runs the same code
// under mpirun (MPICommunicator) and as a single process (LocalCommunicator).
import DraftErrors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The collectives a data-parallel trainer needs: every rank calls the same sequence of them.
///
/// Thread-safety: under MPI the world is initialised with `MPI_THREAD_FUNNELED`, so every call must come from the
/// thread that created the communicator (the main thread). Compute threads must not call into it.
///
/// Errors: a throwing call means this rank can no longer take part in collectives. The caller must not simply exit,
/// or the other ranks stay blocked in their next collective; route the error to `abort(exitCode:message:)`
/// (see `abortOnError(_:)`).
public protocol Communicator: AnyObject {
    /// This process's rank in the world, `0..<size`.
    var rank: Int { get }
    /// Number of ranks in the world.
    var size: Int { get }
    /// Rank among the processes on this host (selects the accelerator module).
    var localRank: Int { get }
    /// In-place sum over ranks (blocking).
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Starts an in-place sum over ranks and returns at once; the buffer must stay untouched until the request
    /// completes. Every rank starts the same reductions in the same order. At most `maxElementsPerReduction`
    /// elements per call.
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any AllReduceRequest
    /// Whether a second thread may drive requests (`test()`) while the owning thread keeps making calls: what a
    /// reduction progress thread needs (MPI_THREAD_SERIALIZED and a lock around every call, under MPI).
    var allowsProgressThread: Bool { get }
    /// Sum of a few doubles (metrics: loss sums, token counts, squared norms), blocking.
    func allReduceSum(_ values: [Double]) throws -> [Double]
    /// Element-wise maximum of a few doubles over ranks, blocking.
    func allReduceMax(_ values: [Double]) throws -> [Double]
    /// Raw bytes from `root` to all ranks (initial parameters, resume state). Every rank passes a buffer of the same size.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Returns once every rank has called it.
    func barrier() throws
    /// Ends the whole job from any rank with a message naming the rank: MPI_Abort under MPI, exit() locally.
    func abort(exitCode: Int32, message: String) -> Never
    /// Leaves the world cleanly (MPI_Finalize). Collective; call once at the end of a successful run. Idempotent.
    func shutdown() throws
}

/// A non-blocking all-reduce in flight (`Communicator.startAllReduceSum`).
public protocol AllReduceRequest: AnyObject {
    /// Lets the reduction progress (a communicator may only advance it inside such calls); true once it is complete
    /// and the buffer holds the sum.
    func test() throws -> Bool
    /// Blocks until the reduction is complete.
    func wait() throws
}

/// A request that completed when it was made: what a communicator with only blocking collectives returns.
public final class CompletedRequest: AllReduceRequest {
    public init() {}
    public func test() throws -> Bool { true }
    public func wait() throws {}
}

/// Largest element count one non-blocking reduction carries: MPI counts are C ints.
public let maxElementsPerReduction = 1 << 30

extension Communicator {
    /// A blocking reduction dressed as a non-blocking one, for communicators without their own.
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any AllReduceRequest {
        try allReduceSum(buffer)
        return CompletedRequest()
    }

    public var allowsProgressThread: Bool { false }

    /// Runs `body`; if it throws, ends the whole job through `abort(exitCode:message:)` with the error's text, so a
    /// failing rank never leaves the others blocked in a collective.
    public func abortOnError<T>(exitCode: Int32 = 1, _ body: () throws -> T) -> T {
        do {
            return try body()
        } catch {
            abort(exitCode: exitCode, message: describe(error))
        }
    }

    /// Broadcasts an array of trivial values from `root`; every rank passes an array of the same count.
    public func broadcast<T: BitwiseCopyable>(_ values: inout [T], root: Int) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }
}

/// An error from the distributed layer: which call failed and the MPI library's own text for it.
public enum DistributedError: BadInputError, Sendable {
    /// An MPI call returned `code`; `message` is `MPI_Error_string(code)`.
    case mpi(call: String, code: Int32, message: String)
    /// A caller passed something the communicator cannot do (a root outside the world, mismatched sizes, ...).
    case invalidArgument(String)
    /// The launcher's environment is malformed (a local-rank variable that is not a rank): bad input.
    case environment(String)
    /// The communicator was used after `shutdown()`.
    case finalized

    public var description: String {
        switch self {
        case let .mpi(call, code, message): return "\(call) failed (MPI error \(code)): \(message)"
        case let .invalidArgument(text), let .environment(text): return text
        case .finalized: return "communicator used after shutdown()"
        }
    }

    /// Only the launcher's environment is the user's to fix; MPI failures and misuse are runtime failures.
    public var isBadInput: Bool {
        if case .environment = self { return true }
        return false
    }
}

/// Chooses the communicator for this process: MPI when launched by mpirun (or another PMIx launcher),
/// otherwise a world of one, which never calls MPI_Init so the binary runs without mpirun.
public func makeCommunicator() throws -> any Communicator {
    if launchedByMPI(environmentValue) {
        return try MPICommunicator()
    }
    return LocalCommunicator()
}

/// Whether the environment says this process is one rank of an MPI job.
func launchedByMPI(_ environment: (String) -> String?) -> Bool {
    for key in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"] where environment(key) != nil {
        return true
    }
    return false
}

/// This process's rank among those on its host, as the launcher states it: Open MPI's `OMPI_COMM_WORLD_LOCAL_RANK`,
/// MPICH/Hydra's `MPI_LOCALRANKID`, Slurm's `SLURM_LOCALID` or PMI's `PMI_LOCAL_RANK`, the first one set; nil when
/// none is. A value that is not a non-negative integer is an error naming the variable.
public func launcherLocalRank(_ environment: (String) -> String?) throws -> Int? {
    for key in ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "PMI_LOCAL_RANK"] {
        guard let text = environment(key) else { continue }
        guard let value = Int(text[...].trimmingSpaces), value >= 0 else {
            throw DistributedError.environment("\(key)=\(text): expected the process's local rank, a non-negative integer")
        }
        return value
    }
    return nil
}

/// Test-only failure hook: true when env `SWIFTDRAFT_TEST_FAIL_AT=rank:step` names this rank and step.
/// The trainer throws when it returns true, which exercises the real fatal path (abort of every rank).
/// A malformed value is reported once on stderr and ignored, so a typo cannot silently pass a failure test.
public func injectedFailure(rank: Int, step: Int) -> Bool {
    guard let raw = environmentValue(FailureInjection.variable), !raw.isEmpty else { return false }
    guard let target = FailureInjection.parse(raw) else {
        FailureInjection.warnOnce(raw)
        return false
    }
    return target.rank == rank && target.step == step
}

enum FailureInjection {
    static let variable = "SWIFTDRAFT_TEST_FAIL_AT"
    private static var warned = false

    static func warnOnce(_ raw: String) {
        guard !warned else { return }
        warned = true
        writeStderr("swiftdraft: ignoring \(variable)=\(raw): expected RANK:STEP, e.g. 3:5\n")
    }

    static func parse(_ raw: String) -> (rank: Int, step: Int)? {
        let parts = raw.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let rank = Int(parts[0].trimmingSpaces), let step = Int(parts[1].trimmingSpaces),
              rank >= 0, step >= 0 else { return nil }
        return (rank, step)
    }
}

func environmentValue(_ key: String) -> String? {
    guard let value = getenv(key) else { return nil }
    return String(cString: value)
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// Unbuffered, so the line is out before MPI_Abort kills the process.
func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { break }
        offset += written
    }
}

func describe(_ error: Error) -> String {
    if let error = error as? CustomStringConvertible { return error.description }
    return String(describing: error)
}

/// Monotonic seconds, for the reducer's timings.
@inline(__always)
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
