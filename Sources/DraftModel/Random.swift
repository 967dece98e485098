import Foundation

/// A small, fast, seedable generator (SplitMix64). Parameter initialisation must be reproducible from the run's seed
/// alone, on any machine, so it cannot use the system generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in (0, 1), never 0 so that `log` is safe.
    public mutating func nextUnitInterval() -> Double {
        (Double(next() >> 11) + 0.5) / Double(1 << 53)
    }

    /// A standard normal sample (Box-Muller; the second value is dropped to keep the stream position simple).
    public mutating func nextNormal() -> Double {
        let u1 = nextUnitInterval(), u2 = nextUnitInterval()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
