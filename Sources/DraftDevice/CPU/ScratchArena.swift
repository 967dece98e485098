import Foundation

/// Grow-only working memory a `CPUDevice` reuses from one kernel call to the next: the quantized activations of the
/// integer products and the threads' packed weight tiles and fp32 panels.
///
/// Why not allocate per call: a block above glibc's mmap threshold (128 KiB at first) is mapped fresh by every
/// allocation, and its pages are faulted in and zeroed on first touch. Quantizing a batch's activations into a new
/// 200-800 KiB buffer per product cost about 7% of batch-64 generation (perf: the quantizer's stores took the faults).
/// Like the device itself, an arena serves one caller at a time; a kernel takes its buffers before it fans out to the
/// threads, which then use them side by side. Slot 0 holds a kernel's shared input (the quantized activations), slots
/// 1... one buffer per thread, so that one kernel can hold both.
final class ScratchArena {
    private var slots: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []

    /// The shared buffer of at least `bytes` bytes (slot 0).
    func shared(bytes: Int) -> UnsafeMutableRawPointer { buffers(1, bytes: bytes, first: 0)[0] }

    /// One buffer of at least `bytes` bytes per thread, for `parallelChunks`' chunk indices `0..<threads`.
    func perThread(_ threads: Int, bytes: Int) -> [UnsafeMutableRawPointer] { buffers(threads, bytes: bytes, first: 1) }

    /// `count` buffers of at least `bytes` bytes each, 64-byte aligned, from slot `first` on; the contents are
    /// whatever an earlier call left. Valid until the next call that takes any of the same slots.
    private func buffers(_ count: Int, bytes: Int, first: Int) -> [UnsafeMutableRawPointer] {
        while slots.count < first + count {
            slots.append((UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), 64))
        }
        return (first..<(first + count)).map { slot in
            if slots[slot].bytes < bytes {
                slots[slot].pointer.deallocate()
                // Room to grow by half again, so that slowly rising sizes (a prefill's chunks) do not reallocate
                // each time.
                let grown = max(bytes, slots[slot].bytes + slots[slot].bytes / 2)
                slots[slot] = (UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 64), grown)
            }
            return slots[slot].pointer
        }
    }

    deinit {
        for slot in slots { slot.pointer.deallocate() }
    }
}
