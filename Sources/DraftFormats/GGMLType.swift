/// ggml's tensor element types, as GGUF stores them (`ggml_type` ids), with their block geometry.
///
/// A quantized type packs `blockElements` consecutive weights of a row into one fixed-size block of `blockBytes`
/// (for example Q4_1: a half scale, a half minimum and 16 bytes of 4-bit values for 32 weights = 20 bytes). A row's
/// element count must be a multiple of `blockElements`. Layouts: ggml's `ggml-common.h` and GGUF's `docs/gguf.md`.
public enum GGMLType: UInt32, CaseIterable, Sendable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14
    case bf16 = 30

    /// The name llama.cpp prints (`F32`, `Q4_K`, ...).
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }

    /// Weights per block.
    public var blockElements: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 2 + 16          // d, 32 x 4 bits
        case .q4_1: return 2 + 2 + 16      // d, m, 32 x 4 bits
        case .q5_0: return 2 + 4 + 16      // d, high bits, 32 x 4 low bits
        case .q5_1: return 2 + 2 + 4 + 16  // d, m, high bits, 32 x 4 low bits
        case .q8_0: return 2 + 32          // d, 32 x int8
        case .q4_K: return 2 + 2 + 12 + 128          // d, dmin, 8 x (6-bit scale, 6-bit min), 256 x 4 bits
        case .q5_K: return 2 + 2 + 12 + 32 + 128     // as Q4_K plus 256 high bits
        case .q6_K: return 128 + 64 + 16 + 2         // 256 x 4 low bits, 256 x 2 high bits, 16 int8 scales, d
        }
    }

    public var isQuantized: Bool { blockElements > 1 }

    /// Bytes of `elements` weights, or nil when `elements` is not a whole number of blocks.
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockElements == 0 else { return nil }
        let (bytes, overflow) = (elements / blockElements).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }
}
