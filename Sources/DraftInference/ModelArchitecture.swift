import DraftDevice
import DraftFormats
import Foundation

/// The decoder architectures the model loaders read. The layer logic is shared (pre-norm attention and SwiGLU MLP);
/// they differ in how files name and fuse their tensors, in q/k/v biases, and in rotary layout on disk.
public enum ModelArchitecture: String, CaseIterable, Sendable {
    case llama, phi3, qwen2

    /// The names a user can give, for messages listing what is supported.
    public static var supportedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Hugging Face `config.json` `architectures` entries read as each architecture.
    static let huggingFaceClasses: [String: ModelArchitecture] = [
        "LlamaForCausalLM": .llama, "MistralForCausalLM": .llama,
        "Phi3ForCausalLM": .phi3, "Qwen2ForCausalLM": .qwen2,
    ]

    /// Whether q, k and v carry biases (Qwen2).
    var hasAttentionBias: Bool { self == .qwen2 }

    /// llama.cpp's converter permutes a `llama` model's q/k rows into interleaved rotary pairs; phi3 and qwen2 keep
    /// Hugging Face's NEOX half-split rows. The engine rotates half-split rows, so only `llama` GGUF rows are undone.
    var ggufRotaryRowsInterleaved: Bool { self == .llama }
}

/// Rotary scaling as Llama-3 defines it (`rope_scaling.rope_type == "llama3"`): wavelengths shorter than
/// `originalContext / highFreqFactor` keep their frequency, longer than `originalContext / lowFreqFactor` are divided
/// by `factor`, and the band between is interpolated smoothly. Returns the divisor of each inverse frequency, which is
/// what llama.cpp's converter stores in `rope_freqs.weight`.
func llama3RopeFactors(inverseFrequencies: [Float], factor: Double, lowFreqFactor: Double, highFreqFactor: Double,
                       originalContext: Double) -> [Float] {
    let lowFreqWavelength = originalContext / lowFreqFactor
    let highFreqWavelength = originalContext / highFreqFactor
    return inverseFrequencies.map { f in
        let wavelength = 2 * Double.pi / Double(f)
        if wavelength < highFreqWavelength { return 1 }
        if wavelength > lowFreqWavelength { return Float(factor) }
        let smooth = (originalContext / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
        return Float(1 / ((1 - smooth) / factor + smooth))
    }
}

/// What keeps a loaded model's weights alive: the file mappings its quantized views point into, host buffers it owns
/// (permuted rows), and its device allocations, freed when the model goes away.
final class LoadedWeightStorage: @unchecked Sendable {
    let device: any Device
    private(set) var deviceBuffers: [DevicePointer<Float>] = []
    private(set) var hostBuffers: [UnsafeMutableRawPointer] = []
    /// Bytes of host memory owned beyond the mapping (permuted q/k rows of quantized llama weights).
    private(set) var ownedHostBytes = 0
    var retained: [AnyObject] = []

    init(device: any Device) { self.device = device }

    deinit {
        for p in deviceBuffers { device.free(p) }
        for p in hostBuffers { p.deallocate() }
    }

    /// Copies `values` to a new device buffer.
    func upload(_ values: UnsafeBufferPointer<Float>) throws -> DevicePointer<Float> {
        let p = try device.allocate(Float.self, count: values.count)
        deviceBuffers.append(p)
        try device.copyToDevice(values, p)
        return p
    }

    func upload(_ values: [Float]) throws -> DevicePointer<Float> {
        try values.withUnsafeBufferPointer { try upload($0) }
    }

    /// A host buffer of `bytes` owned by the model, 64-byte aligned for the vector kernels.
    func ownedHostBuffer(bytes: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        hostBuffers.append(p)
        ownedHostBytes += bytes
        return p
    }
}
