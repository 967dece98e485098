import Crypto

/// Streaming SHA-256 for tokenizer fingerprints and file digests: swift-crypto's, behind the small interface the
/// fingerprinting code and the tests use (bytes in, hex out).
public struct SHA256 {
    private var hasher = Crypto.SHA256()

    public init() {}

    /// Adds bytes to the message.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    /// Adds bytes to the message.
    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 { hasher.update(data: Array(bytes)) }

    /// The digest (32 bytes); the hasher is spent.
    public mutating func finalize() -> [UInt8] { Array(hasher.finalize()) }

    /// The hex digest of `bytes`.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(bytes)
        return hexString(h.finalize())
    }

    /// Lower-case hex of a digest.
    public static func hexString(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(digest.count * 2)
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
