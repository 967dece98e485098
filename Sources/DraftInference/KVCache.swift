import DraftDevice
import DraftErrors

/// Keys and values of every layer for `slotCount` sequences of up to `capacity` tokens, on a device.
///
/// Per layer one K and one V buffer of `(slotCount, capacity, kvHeads, headDim)`: slot `s` holds one sequence, its
/// `p`-th token at position `p`. `lengths[s]` is how many positions of slot `s` hold valid keys; a forward appends
/// after them (or overwrites from an earlier start, which is what speculative rollback needs: `trim` then decode).
public final class KVCache {
    public let device: any Device
    public let layers: Int
    public let slotCount: Int
    public let capacity: Int
    public let kvHeads: Int
    public let headDim: Int
    /// `keys[l]`, `values[l]`: layer `l`'s `(slotCount, capacity, kvHeads, headDim)` buffers.
    public let keys: [DevicePointer<Float>]
    public let values: [DevicePointer<Float>]
    /// Valid positions per slot.
    public private(set) var lengths: [Int]

    public init(device: any Device, layers: Int, slotCount: Int, capacity: Int, kvHeads: Int, headDim: Int) throws {
        guard slotCount > 0, capacity > 0 else {
            throw InputError("KV cache: expected at least one slot and one position, got \(slotCount) slots of \(capacity)")
        }
        self.device = device
        self.layers = layers
        self.slotCount = slotCount
        self.capacity = capacity
        self.kvHeads = kvHeads
        self.headDim = headDim
        let count = slotCount * capacity * kvHeads * headDim
        var allocated: [DevicePointer<Float>] = []
        do {
            for _ in 0..<(2 * layers) { allocated.append(try device.allocate(Float.self, count: count)) }
        } catch {
            allocated.forEach { device.free($0) }
            throw error
        }
        keys = Array(allocated[0..<layers])
        values = Array(allocated[layers...])
        lengths = [Int](repeating: 0, count: slotCount)
    }

    /// A cache shaped for `config`: `capacity` positions per slot (at most the model's context).
    public convenience init(config: DecoderConfig, device: any Device, slotCount: Int, capacity: Int? = nil) throws {
        try self.init(device: device, layers: config.layers, slotCount: slotCount,
                      capacity: min(capacity ?? config.contextLength, config.contextLength),
                      kvHeads: config.kvHeads, headDim: config.headDim)
    }

    deinit {
        keys.forEach { device.free($0) }
        values.forEach { device.free($0) }
    }

    /// Bytes the cache takes on its device.
    public var bytes: Int { 2 * layers * slotCount * capacity * kvHeads * headDim * MemoryLayout<Float>.stride }

    /// Forgets every position of `slot` at or beyond `length` (speculative rollback: the rejected tokens' keys).
    public func trim(slot: Int, to length: Int) throws {
        try checkSlot(slot)
        guard length >= 0, length <= lengths[slot] else {
            throw InputError("KV cache: cannot trim slot \(slot) of \(lengths[slot]) positions to \(length)")
        }
        lengths[slot] = length
    }

    /// Gives slot `destination` the first `length` positions of slot `source` (a prompt that several sequences share
    /// is prefilled once), and that length.
    public func copyPrefix(from source: Int, to destination: Int, length: Int) throws {
        try checkSlot(source)
        try checkSlot(destination)
        guard length >= 0, length <= lengths[source] else {
            throw InputError("KV cache: cannot copy \(length) positions of slot \(source), which holds \(lengths[source])")
        }
        let width = kvHeads * headDim
        if length > 0 && source != destination {
            for buffer in keys + values {
                try device.copy(buffer.advanced(by: source * capacity * width),
                                buffer.advanced(by: destination * capacity * width), count: length * width)
            }
        }
        lengths[destination] = length
    }

    /// Empties `slot` for a new sequence.
    public func reset(slot: Int) throws {
        try checkSlot(slot)
        lengths[slot] = 0
    }

    /// Empties every slot.
    public func resetAll() {
        for s in 0..<slotCount { lengths[s] = 0 }
    }

    /// Records that a forward wrote positions `start..<end` of `slot` (called by the engine after the kernels ran).
    func didWrite(slot: Int, end: Int) {
        lengths[slot] = end
    }

    func checkSlot(_ slot: Int) throws {
        guard slot >= 0, slot < slotCount else {
            throw InputError("KV cache: slot \(slot) is outside 0..<\(slotCount)")
        }
    }
}
