import Foundation

/// Rotary-embedding tables as Hugging Face forms them, shared by the training model and the inference engine so both
/// rotate identically: inverse frequencies `1 / theta^(2i/headDim)` in float32, angles `float32(t) * inverse
/// frequency`, and their cosines and sines laid out `(positions, headDim/2)`.
public enum RotaryTables {
    /// The `headDim / 2` unscaled inverse frequencies.
    public static func inverseFrequencies(theta: Double, headDim: Int) -> [Float] {
        (0..<(headDim / 2)).map { i in Float(1 / pow(theta, Double(2 * i) / Double(headDim))) }
    }

    /// `cos` and `sin` of every position's angles, `(positions, inverseFrequencies.count)` row-major.
    public static func tables(inverseFrequencies: [Float], positions: Int) -> (cos: [Float], sin: [Float]) {
        let half = inverseFrequencies.count
        var cosTable = [Float](repeating: 0, count: positions * half)
        var sinTable = cosTable
        for t in 0..<positions {
            for i in 0..<half {
                let angle = Float(t) * inverseFrequencies[i]
                cosTable[t * half + i] = Foundation.cos(angle)
                sinTable[t * half + i] = Foundation.sin(angle)
            }
        }
        return (cosTable, sinTable)
    }
}
