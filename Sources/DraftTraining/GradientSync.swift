import DraftDevice
import DraftDistributed

/// Sums a model's gradient over ranks on any device: in place where the device's memory is host memory, otherwise
/// through a host staging buffer, one bucket at a time.
///
/// With overlap, backward reports through `gradientsReady(from:)` which gradients are final; each bucket the
/// reducer is about to start is first copied device -> host (the copy waits for the kernels that wrote it), so the
/// all-reduce of the late layers runs while the device computes the early ones. `finish()` stages what is left,
/// waits for every bucket and copies the sum back. Staged or not, the buckets and their order are the reducer's, so
/// the sum is bitwise the same with overlap on and off and on every backend.
final class GradientSync {
    let reducer: GradientReducer
    private let device: any Device
    private let gradients: DevicePointer<Float>
    private let count: Int
    /// The host copy the reducer works on; nil when it works on the device memory itself.
    private let staging: UnsafeMutableBufferPointer<Float>?
    /// Buckets `0..<staged` of `reducer.buckets` are on the host this step.
    private var staged = 0
    /// Seconds this step spent copying between device and host (on the step's critical path).
    private(set) var stagingSeconds = 0.0
    /// Staging time of the last finished step.
    private(set) var lastStagingSeconds = 0.0

    init(device: any Device, gradients: DevicePointer<Float>, count: Int, communicator: any Communicator,
         bucketBytes: Int, overlap: Bool, progressThread: Bool) {
        self.device = device
        self.gradients = gradients
        self.count = count
        let target: UnsafeMutablePointer<Float>
        if let inPlace = device.hostBuffer(gradients, count: count), let base = inPlace.baseAddress {
            staging = nil
            target = base
        } else {
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
            buffer.initialize(repeating: 0)
            staging = buffer
            target = buffer.baseAddress!
        }
        reducer = GradientReducer(communicator: communicator, gradient: target, count: count, bucketBytes: bucketBytes,
                                  overlap: overlap, progressThread: progressThread)
    }

    deinit { staging?.deallocate() }

    var overlap: Bool { reducer.overlap }

    /// What backward calls with overlap on (nil without: the whole reduction runs in `finish()`).
    var readyHandler: ((Int) throws -> Void)? {
        overlap ? { [unowned self] offset in try self.gradientsReady(from: offset) } : nil
    }

    /// Every gradient element at offset >= `offset` is final: stage the buckets that became whole, then let the
    /// reducer start them.
    func gradientsReady(from offset: Int) throws {
        try stage { $0.lowerBound >= offset }
        try reducer.gradientsReady(from: offset)
    }

    /// Stages the rest, completes every bucket's all-reduce and, when staged, writes the sum back to the device.
    func finish() throws {
        try stage { _ in true }
        try reducer.finish()
        if let staging {
            let t0 = now()
            try device.copyToDevice(UnsafeBufferPointer(staging), gradients)
            stagingSeconds += now() - t0
        }
        staged = 0
        lastStagingSeconds = stagingSeconds
        stagingSeconds = 0
    }

    /// Copies to the host, in plan order, the not yet staged buckets while `isReady` holds for them.
    private func stage(while isReady: (Range<Int>) -> Bool) throws {
        guard let staging else { return }
        let buckets = reducer.buckets
        let first = staged
        while staged < buckets.count, isReady(buckets[staged]) { staged += 1 }
        guard staged > first else { return }
        // The buckets just made whole are contiguous (plan order runs from the end of the buffer down): one copy.
        let range = buckets[staged - 1].lowerBound..<buckets[first].upperBound
        let t0 = now()
        try device.copyToHost(gradients.advanced(by: range.lowerBound),
                              UnsafeMutableBufferPointer(rebasing: staging[range]))
        stagingSeconds += now() - t0
    }
}
