// xxHash64 (seed 0) over a dataset's bytes as stored (little-endian float32 / int64).
// Chosen over FNV-1a because its four independent lanes run at memory speed: hashing ~600 MB of model and optimizer
// state must cost well under the write itself. It is the standard algorithm, so users can check a dataset from Python:
//     xxhash.xxh64(ds[()].astype('<f4').tobytes()).intdigest() == ds.attrs['checksum_xxh64']

/// The checksum stored with every dataset of a checkpoint: xxHash64, seed 0, over the data's little-endian bytes.
public enum CheckpointChecksum {
    /// Name of the algorithm, as documented to users.
    public static let algorithm = "xxh64"

    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) private static func merge(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        (acc ^ round(0, value)) &* p1 &+ p4
    }

    /// xxHash64 of `bytes` with seed 0.
    public static func xxh64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let length = bytes.count
        guard let base = bytes.baseAddress, length > 0 else { return avalanche(p5) }
        var p = 0
        var h: UInt64
        if length >= 32 {
            var v1 = p1 &+ p2, v2 = p2, v3: UInt64 = 0, v4 = 0 &- p1
            let limit = length - 32
            while p <= limit {
                v1 = round(v1, load64(base, p))
                v2 = round(v2, load64(base, p + 8))
                v3 = round(v3, load64(base, p + 16))
                v4 = round(v4, load64(base, p + 24))
                p += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1)
            h = merge(h, v2)
            h = merge(h, v3)
            h = merge(h, v4)
        } else {
            h = p5
        }
        h = h &+ UInt64(length)
        return finish(h, rest: base + p, count: length - p)
    }

    /// xxHash64 of a float32 buffer's bytes (little-endian hosts store them as the file does).
    public static func xxh64(_ values: UnsafeBufferPointer<Float>) -> UInt64 { xxh64(UnsafeRawBufferPointer(values)) }

    /// xxHash64 of an int64 buffer's bytes.
    public static func xxh64(_ values: UnsafeBufferPointer<Int64>) -> UInt64 { xxh64(UnsafeRawBufferPointer(values)) }

    @inline(__always) private static func load64(_ base: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The tail (fewer than 32 bytes) and the final avalanche.
    private static func finish(_ seed: UInt64, rest: UnsafeRawPointer, count: Int) -> UInt64 {
        var h = seed
        var p = 0
        while p + 8 <= count {
            h ^= round(0, load64(rest, p))
            h = rotl(h, 27) &* p1 &+ p4
            p += 8
        }
        if p + 4 <= count {
            let word = UInt32(littleEndian: rest.loadUnaligned(fromByteOffset: p, as: UInt32.self))
            h ^= UInt64(word) &* p1
            h = rotl(h, 23) &* p2 &+ p3
            p += 4
        }
        while p < count {
            h ^= UInt64(rest.load(fromByteOffset: p, as: UInt8.self)) &* p5
            h = rotl(h, 11) &* p1
            p += 1
        }
        return avalanche(h)
    }

    @inline(__always) private static func avalanche(_ seed: UInt64) -> UInt64 {
        var h = seed
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
