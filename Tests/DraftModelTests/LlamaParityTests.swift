import DraftDevice
import DraftFormats
import DraftModel
import Foundation
import XCTest

/// Parity with `transformers.LlamaForCausalLM` (fixtures from scripts/reference/llama_parity_fixtures.py): logits,
/// loss, every parameter's gradient, and parameters after three clipped AdamW steps, tied and untied.
final class LlamaParityTests: XCTestCase {
    func testTiedEmbeddingsMatchPyTorch() throws { try checkParity("llama-tied") }
    func testUntiedEmbeddingsMatchPyTorch() throws { try checkParity("llama-untied") }

    private func checkParity(_ fixtureName: String) throws {
        let fixture = try Fixture(fixtureName)
        let model = try LlamaModel(config: fixture.config, device: CPUDevice(threads: 2))
        try model.setParameters(fixture.flatParameters(model.layout))
        let n = fixture.batch * fixture.seqLen

        // Logits.
        let logits = try model.logits(tokens: fixture.inputs, batch: fixture.batch, seqLen: fixture.seqLen)
        let referenceLogits = try XCTUnwrap(fixture.file.floats("logits"))
        XCTAssertEqual(logits.count, referenceLogits.count)
        let maxLogitDiff = zip(logits, referenceLogits).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(maxLogitDiff, 1e-4, "max |logits - reference|")

        // Loss and gradients of the mean loss.
        let targetCount = fixture.labels.filter { $0 >= 0 }.count
        XCTAssertLessThan(targetCount, n, "the fixture must exercise ignored targets")
        try model.zeroGradients()
        let result = try model.forwardBackward(tokens: fixture.inputs, targets: fixture.labels, batch: fixture.batch,
                                               seqLen: fixture.seqLen, lossScale: 1 / Float(targetCount))
        XCTAssertEqual(result.targets, targetCount)
        let loss = result.lossSum / Double(targetCount)
        let referenceLoss = Double(try XCTUnwrap(fixture.file.floats("loss"))[0])
        XCTAssertLessThanOrEqual(abs(loss - referenceLoss) / referenceLoss, 1e-5, "loss \(loss) vs \(referenceLoss)")

        let gradients = try model.readGradients()
        var worstGradient = 0.0, worstParameter = 0.0
        for slot in model.layout.slots {
            let reference = try XCTUnwrap(fixture.file.floats("grad." + slot.name), slot.name)
            let ours = Array(gradients[slot.offset..<(slot.offset + slot.count)])
            worstGradient = max(worstGradient, relativeError(ours, reference))
            XCTAssertLessThanOrEqual(relativeError(ours, reference), 1e-4, "gradient of \(slot.name)")
        }

        // Three AdamW steps on the same batch, clipped, decay on matrices only.
        let optimizer = try AdamW(model: model, hyperparameters: fixture.hyper)
        for step in 1...3 {
            try model.zeroGradients()
            try model.forwardBackward(tokens: fixture.inputs, targets: fixture.labels, batch: fixture.batch,
                                      seqLen: fixture.seqLen, lossScale: 1 / Float(targetCount))
            let norm = try optimizer.gradientNorm()
            XCTAssertEqual(Double(norm), fixture.gradNorms[step - 1], accuracy: 1e-4 * fixture.gradNorms[step - 1])
            try optimizer.update(lr: fixture.lr, gradNorm: norm)
            let parameters = try model.readParameters()
            for slot in model.layout.slots {
                let reference = try XCTUnwrap(fixture.file.floats("adamw\(step).\(slot.name)"), slot.name)
                let ours = Array(parameters[slot.offset..<(slot.offset + slot.count)])
                worstParameter = max(worstParameter, relativeError(ours, reference))
                XCTAssertLessThanOrEqual(relativeError(ours, reference), 1e-5, "step \(step): \(slot.name)")
            }
        }
        print("\(fixtureName): max |logit diff| \(maxLogitDiff), loss rel diff \(abs(loss - referenceLoss) / referenceLoss), worst gradient rel err \(worstGradient), worst AdamW parameter rel err \(worstParameter)")
    }
}

/// `||a - b|| / ||b||`
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var difference = 0.0, reference = 0.0
    for i in a.indices {
        difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
        reference += Double(b[i]) * Double(b[i])
    }
    return (difference / max(reference, 1e-30)).squareRoot()
}

/// A parity fixture written by scripts/reference/llama_parity_fixtures.py.
struct Fixture {
    let file: SafeTensorsFile
    let config: ModelConfig
    let batch: Int
    let seqLen: Int
    let inputs: [Int32]
    let labels: [Int32]
    let hyper: AdamWHyperparameters
    let lr: Float
    let gradNorms: [Double]

    init(_ name: String) throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors",
                                                  subdirectory: "Fixtures"), "fixture \(name) is missing")
        file = try SafeTensorsFile(contentsOf: url)
        config = try JSONDecoder().decode(ModelConfig.self, from: Data(try XCTUnwrap(file.metadata["config"]).utf8))
        batch = Int(file.metadata["batch"] ?? "") ?? 0
        seqLen = Int(file.metadata["seq_len"] ?? "") ?? 0
        inputs = try XCTUnwrap(file.int32s("input_ids"))
        labels = try XCTUnwrap(file.int32s("labels"))
        let h = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(file.metadata["hyper"]).utf8))
                              as? [String: Double])
        lr = Float(h["lr"] ?? 0)
        hyper = AdamWHyperparameters(beta1: Float(h["beta1"] ?? 0), beta2: Float(h["beta2"] ?? 0),
                                     eps: Float(h["eps"] ?? 0), weightDecay: Float(h["weight_decay"] ?? 0),
                                     gradClip: Float(h["grad_clip"] ?? 0))
        gradNorms = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(file.metadata["grad_norms"]).utf8))
                                  as? [Double])
    }

    func flatParameters(_ layout: ParameterLayout) throws -> [Float] {
        var flat = [Float](repeating: .nan, count: layout.count)
        for slot in layout.slots {
            let values = try XCTUnwrap(file.floats(slot.name), "fixture lacks \(slot.name)")
            XCTAssertEqual(values.count, slot.count, slot.name)
            flat.replaceSubrange(slot.offset..<(slot.offset + slot.count), with: values)
        }
        return flat
    }
}
