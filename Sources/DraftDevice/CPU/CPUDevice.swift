import CBLAS
import Foundation

/// The CPU backend: OpenBLAS `sgemm` for matrix products, vectorised Swift for everything else, work split over
/// `threads` cores. Device pointers are host addresses; everything runs synchronously in issue order.
public final class CPUDevice: Device {
    public let threads: Int
    /// How the small-m quantized products of inference treat their activations.
    public let quantizedActivations: QuantizedActivations
    public private(set) var bytesAllocated: Int = 0
    /// Working memory the kernels reuse between calls (not counted in `bytesAllocated`).
    let scratch = ScratchArena()
    private var allocationSizes: [UInt64: Int] = [:]

    public init(threads: Int? = nil, quantizedActivations: QuantizedActivations = .configured) {
        self.threads = threads ?? configuredThreadCount()
        self.quantizedActivations = !integerKernelsAvailable ? .exact
            : quantizedActivations
        openblas_set_num_threads(Int32(self.threads))
    }

    public var name: String {
        "cpu (\(threads) thread\(threads == 1 ? "" : "s"), OpenBLAS \(blasCore), \(quantizedActivations.rawValue) "
            + "quantized activations)"
    }

    private var blasCore: String {
        guard let core = openblas_get_corename() else { return "" }
        return String(cString: core)
    }

    // MARK: Backend facts

    /// Device pointers are host addresses, so the memory is used in place.
    public func hostBuffer<T>(_ pointer: DevicePointer<T>, count: Int) -> UnsafeMutableBufferPointer<T>? {
        UnsafeMutableBufferPointer(start: UnsafeMutablePointer<T>(bitPattern: UInt(pointer.address)), count: count)
    }

    public var hostComputeThreads: Int { threads }

    // MARK: Memory

    public func allocate<T>(_ type: T.Type, count: Int) throws -> DevicePointer<T> {
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        var raw: UnsafeMutableRawPointer?
        // 64-byte alignment: a cache line, and what AVX-512 loads prefer.
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw DeviceError(.outOfMemory, "cpu: cannot allocate \(bytes) bytes")
        }
        memset(raw, 0, bytes)
        let address = UInt64(UInt(bitPattern: raw))
        allocationSizes[address] = bytes
        bytesAllocated += bytes
        return DevicePointer(address: address)
    }

    public func free<T>(_ pointer: DevicePointer<T>) {
        guard let bytes = allocationSizes.removeValue(forKey: pointer.address) else { return }
        bytesAllocated -= bytes
        Foundation.free(UnsafeMutableRawPointer(bitPattern: UInt(pointer.address)))
    }

    public func copyToDevice<T>(_ source: UnsafeBufferPointer<T>, _ destination: DevicePointer<T>) throws {
        guard let base = source.baseAddress, source.count > 0 else { return }
        memcpy(raw(destination), base, source.count * MemoryLayout<T>.stride)
    }

    public func copyToHost<T>(_ source: DevicePointer<T>, _ destination: UnsafeMutableBufferPointer<T>) throws {
        guard let base = destination.baseAddress, destination.count > 0 else { return }
        memcpy(base, raw(source), destination.count * MemoryLayout<T>.stride)
    }

    public func copy<T>(_ source: DevicePointer<T>, _ destination: DevicePointer<T>, count: Int) throws {
        memmove(raw(destination), raw(source), count * MemoryLayout<T>.stride)
    }

    public func synchronize() throws {}

    // MARK: Elementwise and reductions

    public func fill(_ x: DevicePointer<Float>, count: Int, value: Float) throws {
        let x = host(x)
        if value == 0 {
            memset(x, 0, count * MemoryLayout<Float>.stride)
        } else {
            x.update(repeating: value, count: count)
        }
    }

    public func scale(_ x: DevicePointer<Float>, count: Int, by alpha: Float) throws {
        cblas_sscal(Int32(count), alpha, host(x), 1)
    }

    public func axpy(_ alpha: Float, _ x: DevicePointer<Float>, _ y: DevicePointer<Float>, count: Int) throws {
        cblas_saxpy(Int32(count), alpha, host(x), 1, host(y), 1)
    }

    public func add(_ a: DevicePointer<Float>, _ b: DevicePointer<Float>, _ out: DevicePointer<Float>,
                    count: Int) throws {
        let a = host(a), b = host(b), out = host(out)
        parallelChunks(count, threads: threads, grain: 1 << 16) { _, range in
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                storeVec(loadVec(a + i) + loadVec(b + i), out + i)
                i += 8
            }
            while i < range.upperBound {
                out[i] = a[i] + b[i]
                i += 1
            }
        }
    }

    public func sumOfSquares(_ x: DevicePointer<Float>, count: Int, into result: DevicePointer<Float>) throws {
        let x = host(x)
        let chunks = max(1, min(threads, count >> 16))
        var partials = [Double](repeating: 0, count: chunks)
        partials.withUnsafeMutableBufferPointer { partials in
            parallelChunks(count, threads: chunks, grain: 1) { chunk, range in
                // Float lanes over short runs, folded into a double every 4096 elements: exact enough for a
                // global gradient norm over 10^8 elements, and as fast as a pure float loop.
                var total = 0.0
                var start = range.lowerBound
                while start < range.upperBound {
                    let end = min(start + 4096, range.upperBound)
                    var acc = Vec()
                    var i = start
                    while i + 8 <= end {
                        let v = loadVec(x + i)
                        acc += v * v
                        i += 8
                    }
                    var tail: Float = 0
                    while i < end {
                        tail += x[i] * x[i]
                        i += 1
                    }
                    total += Double(acc.sum()) + Double(tail)
                    start = end
                }
                partials[chunk] = total
            }
        }
        host(result)[0] = Float(partials.reduce(0, +))
    }

    // MARK: Matrix product

    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     alpha: Float, a: DevicePointer<Float>, lda: Int,
                     b: DevicePointer<Float>, ldb: Int,
                     beta: Float, c: DevicePointer<Float>, ldc: Int) throws {
        let a = host(a), b = host(b), c = host(c)
        guard m <= decodeSizedRows, n * k >= decodeSplitMinimum else {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        // A decode-sized product (an fp32 draft's step) runs on the worker team over the output columns, as one
        // matrix-vector product per row when there are few:
        // - OpenBLAS's sgemm packs all of B at every call, which at one row costs more than the product: the 49,152 x
        //   192 head of a full-vocabulary draft took 3.6 ms a token (10.5 GB/s), against a plain read of its 37.7 MB;
        // - OpenBLAS's own threads would keep spinning for a while after it and take cores from the target's
        //   verification pass that follows (that pass cost 1.8-2.0 plain steps against 1.55-1.68 with
        //   OPENBLAS_THREAD_TIMEOUT=4).
        // Each row streams B again, which pays up to `matrixVectorRows` rows (at 4 rows the draft's step took 5.6-5.8
        // ms this way against 4.5-4.6 through sgemm); more rows take a single-threaded sgemm per column chunk. (The
        // last bits of an element can differ from OpenBLAS's threaded sgemm, which sums in another order; a draft's
        // sampled tokens then differ as with any reordering.)
        withSerialBLAS {
            parallelChunks(n, threads: threads, grain: 64) { _, columns in
                guard m <= matrixVectorRows else {
                    let bPart = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
                    sgemm(transA, transB, m, columns.count, k, alpha, a, lda, bPart, ldb, beta,
                          c + columns.lowerBound, ldc)
                    return
                }
                for row in 0..<m {
                    let x = transA ? a + row : a + row * lda
                    let y = c + row * ldc + columns.lowerBound
                    // C[row, columns] = alpha * op(B)[columns, :] . x + beta * C[row, columns]
                    if transB {
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(columns.count), Int32(k), alpha,
                                    b + columns.lowerBound * ldb, Int32(ldb), x, Int32(transA ? lda : 1), beta, y, 1)
                    } else {
                        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(columns.count), alpha,
                                    b + columns.lowerBound, Int32(ldb), x, Int32(transA ? lda : 1), beta, y, 1)
                    }
                }
            }
        }
    }

    // MARK: Pointers

    @inline(__always)
    func host(_ pointer: DevicePointer<Float>) -> UnsafeMutablePointer<Float> {
        UnsafeMutablePointer(bitPattern: UInt(pointer.address)).unsafelyUnwrapped
    }

    @inline(__always)
    func host(_ pointer: DevicePointer<Int32>) -> UnsafeMutablePointer<Int32> {
        UnsafeMutablePointer(bitPattern: UInt(pointer.address)).unsafelyUnwrapped
    }

    @inline(__always)
    private func raw<T>(_ pointer: DevicePointer<T>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(pointer.address)).unsafelyUnwrapped
    }
}

/// Products of at most this many rows count as decode-sized (one draft step, or a verification pass of a few tokens)
/// and, when `n * k` is at least `decodeSplitMinimum`, run on the worker team rather than OpenBLAS's threads.
let decodeSizedRows = 8
/// Decode-sized products of at most this many rows run as one matrix-vector product per row.
let matrixVectorRows = 2
let decodeSplitMinimum = 1 << 16

/// Row-major single-precision matrix product on host pointers, for kernels that run many small products.
@inline(__always)
func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
           _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
           _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
