#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A world of one process. Never touches MPI, so the binary runs without mpirun (single-process debug mode);
/// every collective is the identity.
public final class LocalCommunicator: Communicator {
    public let rank = 0
    public let size = 1
    public let localRank = 0

    public init() {}

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ values: [Double]) throws -> [Double] { values }
    public func allReduceMax(_ values: [Double]) throws -> [Double] { values }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard root == 0 else {
            throw DistributedError.invalidArgument("broadcast root \(root) is outside a world of 1 rank")
        }
    }

    public func barrier() throws {}

    public func abort(exitCode: Int32, message: String) -> Never {
        writeStderr("swiftdraft: rank 0 of 1 aborting: \(message)\n")
        exit(exitCode == 0 ? 1 : exitCode)
    }

    public func shutdown() throws {}
}
