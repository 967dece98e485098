import Foundation

/// A Hugging Face safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian data. Used for the PyTorch parity fixtures and for `export`.
public struct SafeTensorsFile {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        public let range: Range<Int>
    }

    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        let data = try Data(contentsOf: url, options: .mappedIfSafe)
        func fail(_ what: String) -> Error {
            CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\(url.path): \(what)"])
        }
        guard data.count >= 8 else { throw fail("shorter than a safetensors header") }
        let headerLength = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 0, 8 + headerLength <= data.count,
              let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any]
        else { throw fail("malformed safetensors header") }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                  offsets[0] <= offsets[1], 8 + headerLength + offsets[1] <= data.count
            else { throw fail("tensor '\(name)' has a malformed entry") }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
        self.data = data
        self.dataStart = 8 + headerLength
    }

    public func floats(_ name: String) -> [Float]? { values(name, dtype: "F32") }
    public func int32s(_ name: String) -> [Int32]? { values(name, dtype: "I32") }

    private func values<T>(_ name: String, dtype: String) -> [T]? {
        guard let entry = entries[name], entry.dtype == dtype else { return nil }
        let count = entry.range.count / MemoryLayout<T>.stride
        return data.withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: dataStart + entry.range.lowerBound + $0 * MemoryLayout<T>.stride, as: T.self) }
        }
    }

    /// Writes float32 tensors (in the given order) and string metadata as a safetensors file.
    public static func write(_ tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                             metadata: [String: String], to url: URL) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            let bytes = t.values.count * 4
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { out.append(contentsOf: UnsafeRawBufferPointer(t.values)) }
        try out.write(to: url, options: .atomic)
    }
}
