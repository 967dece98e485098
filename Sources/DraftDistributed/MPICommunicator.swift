import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One rank of an MPI job (Open MPI through the CMPI shims).
///
/// `init` calls `MPI_Init_thread` asking for `MPI_THREAD_SERIALIZED` and requiring at least `MPI_THREAD_FUNNELED`
/// (unless MPI is already initialised), and switches
/// `MPI_COMM_WORLD` to `MPI_ERRORS_RETURN` so failures surface as `DistributedError` with `MPI_Error_string` text
/// instead of killing the process from inside the library. `shutdown()` calls `MPI_Finalize`.
/// Only one instance should exist per process (MPI can be initialised once).
///
/// Threads: call it from the main thread. The one exception is GradientReducer's optional progress thread, which is
/// why SERIALIZED is asked for: every MPI call here is made under one lock, so calls never overlap.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    /// Whether MPI granted `MPI_THREAD_SERIALIZED`, which a reducer progress thread needs.
    public let allowsProgressThread: Bool

    /// Serialises MPI calls between the caller's thread and a reducer's progress thread. Recursive so the reducer
    /// can hold it across several calls.
    let lock = RecursiveLock()

    let comm: MPI_Comm
    private let ownsInitialization: Bool
    private var finalized = false

    /// Largest element count passed to one MPI call: counts are C ints, so bigger buffers go in chunks.
    static let maxCountPerCall = maxElementsPerReduction

    public init() throws {
        var initialized: Int32 = 0
        try MPICommunicator.check(MPI_Initialized(&initialized), "MPI_Initialized")
        var provided: Int32 = 0
        if initialized == 0 {
            try MPICommunicator.check(MPI_Init_thread(nil, nil, swd_mpi_thread_serialized(), &provided),
                                      "MPI_Init_thread")
            if provided < swd_mpi_thread_funneled() {
                // The trainer's compute threads never call MPI, but the main thread must be allowed to while
                // they run; an MPI built without that guarantee is refused rather than risked.
                MPI_Finalize()
                throw DistributedError.invalidArgument(
                    "MPI provides thread level \(provided), below MPI_THREAD_FUNNELED")
            }
            ownsInitialization = true
        } else {
            ownsInitialization = false
            try MPICommunicator.check(MPI_Query_thread(&provided), "MPI_Query_thread")
        }
        allowsProgressThread = provided >= swd_mpi_thread_serialized()
        comm = swd_mpi_comm_world()
        try MPICommunicator.check(MPI_Comm_set_errhandler(comm, swd_mpi_errors_return()), "MPI_Comm_set_errhandler")

        var value: Int32 = 0
        try MPICommunicator.check(MPI_Comm_rank(comm, &value), "MPI_Comm_rank")
        rank = Int(value)
        try MPICommunicator.check(MPI_Comm_size(comm, &value), "MPI_Comm_size")
        size = Int(value)
        localRank = try MPICommunicator.hostLocalRank(comm: comm, worldRank: rank)
    }

    /// The rank among processes on this host: what the launcher says (`launcherLocalRank`: Open MPI, MPICH/Hydra,
    /// Slurm, PMI), else MPI's own view, the rank in the world's shared-memory split.
    private static func hostLocalRank(comm: MPI_Comm, worldRank: Int) throws -> Int {
        if let stated = try launcherLocalRank(environmentValue) { return stated }
        var shared: MPI_Comm? = swd_mpi_comm_null()
        let code = MPI_Comm_split_type(comm, swd_mpi_comm_type_shared(), Int32(worldRank), swd_mpi_info_null(), &shared)
        if code == MPI_SUCCESS, shared != swd_mpi_comm_null() {
            var value: Int32 = 0
            let rankCode = MPI_Comm_rank(shared, &value)
            MPI_Comm_free(&shared)
            if rankCode == MPI_SUCCESS { return Int(value) }
        }
        return 0
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        lock.lock(); defer { lock.unlock() }
        try ensureLive()
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var offset = 0
        while offset < buffer.count {
            let n = min(MPICommunicator.maxCountPerCall, buffer.count - offset)
            try MPICommunicator.check(
                MPI_Allreduce(swd_mpi_in_place(), base + offset, Int32(n), swd_mpi_float(), swd_mpi_sum(), comm),
                "MPI_Allreduce(float, sum)")
            offset += n
        }
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        try reduceDoubles(values, op: swd_mpi_sum(), name: "MPI_Allreduce(double, sum)")
    }

    public func allReduceMax(_ values: [Double]) throws -> [Double] {
        try reduceDoubles(values, op: swd_mpi_max(), name: "MPI_Allreduce(double, max)")
    }

    private func reduceDoubles(_ values: [Double], op: MPI_Op, name: String) throws -> [Double] {
        lock.lock(); defer { lock.unlock() }
        try ensureLive()
        guard !values.isEmpty else { return values }
        var result = values
        try result.withUnsafeMutableBufferPointer { buffer in
            try MPICommunicator.check(
                MPI_Allreduce(swd_mpi_in_place(), buffer.baseAddress, Int32(buffer.count), swd_mpi_double(), op, comm),
                name)
        }
        return result
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        lock.lock(); defer { lock.unlock() }
        try ensureLive()
        guard (0..<size).contains(root) else {
            throw DistributedError.invalidArgument("broadcast root \(root) is outside a world of \(size) ranks")
        }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var offset = 0
        while offset < buffer.count {
            let n = min(MPICommunicator.maxCountPerCall, buffer.count - offset)
            try MPICommunicator.check(MPI_Bcast(base + offset, Int32(n), swd_mpi_byte(), Int32(root), comm), "MPI_Bcast")
            offset += n
        }
    }

    public func barrier() throws {
        lock.lock(); defer { lock.unlock() }
        try ensureLive()
        try MPICommunicator.check(MPI_Barrier(comm), "MPI_Barrier")
    }

    public func abort(exitCode: Int32, message: String) -> Never {
        let code = exitCode == 0 ? 1 : exitCode
        writeStderr("swiftdraft: rank \(rank) of \(size) aborting the job: \(message)\n")
        var isFinalized: Int32 = 0
        MPI_Finalized(&isFinalized)
        if isFinalized == 0 {
            // MPI_Abort tells mpirun to kill every rank, including those blocked in a collective. The lock is not
            // taken: a progress thread may be inside MPI, and the process is going away either way.
            MPI_Abort(comm, code)
        }
        exit(code)
    }

    public func shutdown() throws {
        lock.lock(); defer { lock.unlock() }
        guard !finalized else { return }
        finalized = true
        if ownsInitialization {
            try MPICommunicator.check(MPI_Finalize(), "MPI_Finalize")
        }
    }

    // MARK: - Non-blocking all-reduce

    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any AllReduceRequest {
        lock.lock(); defer { lock.unlock() }
        try ensureLive()
        guard buffer.count <= MPICommunicator.maxCountPerCall else {
            throw DistributedError.invalidArgument("MPI_Iallreduce: \(buffer.count) elements, more than one call carries (\(MPICommunicator.maxCountPerCall))")
        }
        let request = MPIRequest(communicator: self)
        guard let base = buffer.baseAddress, buffer.count > 0 else { return request }
        try MPICommunicator.check(
            MPI_Iallreduce(swd_mpi_in_place(), base, Int32(buffer.count), swd_mpi_float(), swd_mpi_sum(), comm,
                           &request.handle),
            "MPI_Iallreduce(float, sum)")
        return request
    }

    private func ensureLive() throws {
        if finalized { throw DistributedError.finalized }
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != MPI_SUCCESS else { return }
        throw DistributedError.mpi(call: call, code: code, message: errorString(code))
    }

    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(swd_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == MPI_SUCCESS else { return "unknown MPI error" }
        return String(cString: buffer)
    }
}

/// One `MPI_Iallreduce` in flight. Every call takes the communicator's lock, so a progress thread may test it while
/// the main thread makes other MPI calls.
final class MPIRequest: AllReduceRequest {
    private let communicator: MPICommunicator
    /// MPI_REQUEST_NULL once complete (MPI resets it).
    var handle: MPI_Request? = swd_mpi_request_null()

    init(communicator: MPICommunicator) { self.communicator = communicator }

    func test() throws -> Bool {
        communicator.lock.lock(); defer { communicator.lock.unlock() }
        guard handle != swd_mpi_request_null() else { return true }
        var flag: Int32 = 0
        try MPICommunicator.check(MPI_Test(&handle, &flag, swd_mpi_status_ignore()), "MPI_Test")
        return flag != 0
    }

    func wait() throws {
        communicator.lock.lock(); defer { communicator.lock.unlock() }
        guard handle != swd_mpi_request_null() else { return }
        try MPICommunicator.check(MPI_Wait(&handle, swd_mpi_status_ignore()), "MPI_Wait")
    }
}

/// A recursive pthread mutex (Foundation's NSRecursiveLock would do, but this module stays Foundation-free).
final class RecursiveLock {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}
