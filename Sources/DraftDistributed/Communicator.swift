// The collective operations a data-parallel trainer needs, behind one protocol so the trainer runs the same code
// under mpirun (MPICommunicator) and as a single process (LocalCommunicator).
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

extension Communicator {
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
public enum DistributedError: Error, CustomStringConvertible, Sendable {
    /// An MPI call returned `code`; `message` is `MPI_Error_string(code)`.
    case mpi(call: String, code: Int32, message: String)
    /// A caller passed something the communicator cannot do (a root outside the world, mismatched sizes, ...).
    case invalidArgument(String)
    /// The communicator was used after `shutdown()`.
    case finalized

    public var description: String {
        switch self {
        case let .mpi(call, code, message): return "\(call) failed (MPI error \(code)): \(message)"
        case let .invalidArgument(text): return text
        case .finalized: return "communicator used after shutdown()"
        }
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
