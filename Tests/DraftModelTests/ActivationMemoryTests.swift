import DraftDevice
import DraftModel
import XCTest

/// The planner's activation figure is exactly what a training step allocates.
final class ActivationMemoryTests: XCTestCase {
    func testActivationBytesMatchAllocation() throws {
        for (vocab, tied) in [(300, true), (40_000, false)] {
            let config = ModelConfig(vocabSize: vocab, dim: 48, layers: 3, heads: 6, kvHeads: 2, ffnDim: 80, maxSeqLen: 64,
                                     tieEmbeddings: tied)
            let device = CPUDevice(threads: 1)
            let model = try LlamaModel(config: config, device: device)
            let before = device.bytesAllocated
            let tokens = [Int32](repeating: 1, count: 3 * 64)
            try model.forwardBackward(tokens: tokens, targets: tokens, batch: 3, seqLen: 64)
            XCTAssertEqual(device.bytesAllocated - before, LlamaModel.activationBytes(config: config, batch: 3, seqLen: 64))
        }
    }
}
