import Foundation

/// A TensorBoard event file (`events.out.tfevents.<seconds>.<host>`) of scalar summaries, so `tensorboard --logdir`
/// shows a run's curves.
///
/// The file is a TFRecord stream: each record is a little-endian `uint64` length, the masked CRC-32C of those 8 bytes,
/// the payload, and the masked CRC-32C of the payload. Each payload is a serialised `tensorflow.Event` protocol
/// buffer; the first one carries `file_version = "brain.Event:2"`, the rest `wall_time`, `step` and a `Summary` with
/// one `simple_value` per tag. Only the handful of fields scalars need are encoded, by hand (field numbers from
/// TensorFlow's `event.proto` and `summary.proto`). Every record goes out in one `write(2)`, so a crash leaves whole
/// records; a resumed run opens a new file in the same directory, which TensorBoard merges by step.
public final class TensorBoardEventFile {
    public let url: URL
    private let handle: FileHandle

    /// Creates a new event file in `directory` (made if missing).
    public init(directory: URL, now: Date = Date()) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.isEmpty ? "localhost" : ProcessInfo.processInfo.hostName
        let seconds = Int(now.timeIntervalSince1970)
        var candidate = directory.appendingPathComponent("events.out.tfevents.\(seconds).\(host)")
        var suffix = 1
        // Two files opened within one second (a quick resume) must not share a name.
        while FileManager.default.fileExists(atPath: candidate.path) {
            candidate = directory.appendingPathComponent("events.out.tfevents.\(seconds).\(host).\(suffix)")
            suffix += 1
        }
        guard FileManager.default.createFile(atPath: candidate.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: candidate.path) else {
            throw FormatError("\(candidate.path): cannot create the TensorBoard event file")
        }
        url = candidate
        self.handle = handle
        var version = ProtobufEncoder()
        version.double(field: 1, now.timeIntervalSince1970)
        version.bytes(field: 3, Array("brain.Event:2".utf8))
        writeRecord(version.bytes)
    }

    deinit { try? handle.close() }

    /// Appends one event holding `values` (tag -> value) at `step`.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Date = Date()) {
        guard !values.isEmpty else { return }
        var summary = ProtobufEncoder()
        for (tag, value) in values {
            var entry = ProtobufEncoder()
            entry.bytes(field: 1, Array(tag.utf8))
            entry.float(field: 2, Float(value))
            summary.bytes(field: 1, entry.bytes)
        }
        var event = ProtobufEncoder()
        event.double(field: 1, wallTime.timeIntervalSince1970)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.bytes(field: 5, summary.bytes)
        writeRecord(event.bytes)
    }

    private func writeRecord(_ payload: [UInt8]) {
        var record = [UInt8]()
        record.reserveCapacity(payload.count + 16)
        let length = withUnsafeBytes(of: UInt64(payload.count).littleEndian) { Array($0) }
        record += length
        record += withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { Array($0) }
        record += payload
        record += withUnsafeBytes(of: CRC32C.masked(payload).littleEndian) { Array($0) }
        handle.write(Data(record))
    }
}

/// The protocol-buffer wire format, for the few field kinds an event needs.
struct ProtobufEncoder {
    private(set) var bytes: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, wireType: 0)
        rawVarint(value)
    }
    mutating func double(field: Int, _ value: Double) {
        key(field, wireType: 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }
    mutating func bytes(field: Int, _ value: [UInt8]) {
        key(field, wireType: 2)
        rawVarint(UInt64(value.count))
        bytes += value
    }
    mutating func float(field: Int, _ value: Float) {
        key(field, wireType: 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord checksums use it, with TFRecord's masking.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord stores `rotate_right(crc, 15) + 0xa282ead8` so that a CRC of data containing CRCs stays strong.
    public static func masked(_ data: [UInt8]) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
