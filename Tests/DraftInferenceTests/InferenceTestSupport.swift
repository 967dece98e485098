import DraftDevice
import DraftInference
import DraftModel
import Foundation
import XCTest

/// A small GQA draft (6 query heads over 2 KV heads) with Hugging Face's initialisation, on `device`.
func makeTinyDraft(device: any Device, seed: UInt64 = 7, maxSeqLen: Int = 40, dim: Int = 48, heads: Int = 6,
                   ffnDim: Int = 80) throws -> LlamaModel {
    let config = ModelConfig(vocabSize: 97, dim: dim, layers: 2, heads: heads, kvHeads: 2, ffnDim: ffnDim,
                             maxSeqLen: maxSeqLen, ropeTheta: 10_000)
    let model = try LlamaModel(config: config, device: device)
    try model.initializeParameters(seed: seed)
    // N(0, 0.02) weights give nearly uniform logits; larger ones make the comparison see the attention pattern.
    let scaled = try model.readParameters().map { $0 * 8 }
    try model.setParameters(scaled)
    return model
}

func engine(for model: LlamaModel, maxRows: Int = 256, headRows: Int = 64) throws -> DecoderEngine {
    let config = DecoderConfig(model: model.config, bosTokenID: nil, eosTokenIDs: [])
    return try DecoderEngine(config: config, weights: DecoderWeights(llama: model), device: model.device,
                             maxRows: maxRows, headRows: headRows)
}

/// `max |actual - expected| / max |expected|`: relative to the tensor's scale, so entries near zero do not dominate.
func relativeDifference(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count, "length mismatch \(actual.count) vs \(expected.count)")
    var maxDiff = 0.0, maxRef = 0.0
    for (a, e) in zip(actual, expected) {
        if a.isNaN || e.isNaN { return .infinity }
        maxDiff = max(maxDiff, abs(Double(a) - Double(e)))
        maxRef = max(maxRef, abs(Double(e)))
    }
    return maxDiff / max(maxRef, 1e-30)
}

/// The stub HPU plugin SwiftPM built next to the test bundle, or a skip naming where it looked.
func builtStubPath() throws -> String {
    let bundle = Bundle(for: StubAnchor.self).bundleURL
    var directories = [bundle.deletingLastPathComponent(), bundle]
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
    }
    for directory in directories {
        let candidate = directory.appendingPathComponent(HPUPlugin.stubFileName).path
        if FileManager.default.fileExists(atPath: candidate) { return candidate }
    }
    throw XCTSkip("\(HPUPlugin.stubFileName) not found next to the test bundle; build it with `swift build` first")
}

private final class StubAnchor {}
