import DraftDevice
import DraftInference
import DraftModel
import XCTest

final class PerplexityTests: XCTestCase {
    /// llama-perplexity's counting, recomputed from the training forward's logits: whole chunks only, BOS over each
    /// chunk's first token, the second half of each chunk scored.
    func testCountsAsLlamaPerplexity() throws {
        let device = CPUDevice(threads: 2)
        let model = try makeTinyDraft(device: device)
        let engine = try engine(for: model, maxRows: 8)
        var rng = SplitMix64(seed: 8)
        let tokens = (0..<53).map { _ in Int32(rng.next() % 97) }
        let context = 16, bos: Int32 = 1
        let result = try perplexity(engine: engine, tokens: tokens, context: context, bos: bos)
        XCTAssertEqual(result.chunks, 3)  // 53 / 16, the last 5 tokens dropped
        XCTAssertEqual(result.scoredTokens, 3 * (16 - 8 - 1))

        var nll = 0.0
        for c in 0..<3 {
            var chunk = Array(tokens[(c * 16)..<((c + 1) * 16)])
            chunk[0] = bos
            let logits = try model.logits(tokens: chunk, batch: 1, seqLen: 16)
            for j in 8..<15 {
                let row = logits[(j * 97)..<((j + 1) * 97)].map(Double.init)
                let m = row.max()!
                let logSum = log(row.reduce(0) { $0 + exp($1 - m) }) + m
                nll += logSum - row[Int(chunk[j + 1])]
            }
        }
        XCTAssertEqual(result.meanNLL, nll / 21, accuracy: 1e-5)
        XCTAssertEqual(result.perplexity / exp(nll / 21), 1, accuracy: 1e-5)

        XCTAssertThrowsError(try perplexity(engine: engine, tokens: Array(tokens[0..<31]), context: 16, bos: nil)) {
            XCTAssertEqual("\($0)", "score: the text has 31 tokens; a context of 16 needs at least 32")
        }
    }
}
