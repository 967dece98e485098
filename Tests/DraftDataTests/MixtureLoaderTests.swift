import DraftData
import Foundation
import XCTest

/// The mixture loader's proportions and its global order.
final class MixtureLoaderTests: XCTestCase {
    private var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdraft-loader-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    private func source(_ name: String, tokens: Int, offset: Int32) throws -> DataSource {
        let url = work.appendingPathComponent("\(name).bin")
        let ids = (0..<tokens).map { Int32($0 % 200) + offset }
        try TokenShardWriter.write(ids, documents: 1, vocabSize: 512, fingerprint: "test", to: url)
        return try DataSource(name: name, path: url.path)
    }

    func testStageProportionsWithinOnePercentOver10000Sequences() throws {
        let sources = [try source("code", tokens: 40_000, offset: 0), try source("web", tokens: 90_000, offset: 256)]
        let loader = try MixtureLoader(sources: sources,
                                       stages: [StageMixture(name: "code", weights: ["code": 0.67, "web": 0.33])],
                                       seqLen: 16, seed: 3)
        let samples = loader.nextSamples(10_000, stage: 0)
        let code = samples.filter { $0.source == 0 }.count
        XCTAssertEqual(Double(code) / 10_000, 0.67, accuracy: 0.01)
        // Every prefix stays within a sample of the proportion, so short stages are mixed right too.
        var running = 0
        for (i, s) in samples.prefix(1000).enumerated() {
            running += s.source == 0 ? 1 : 0
            XCTAssertLessThanOrEqual(abs(Double(running) - 0.67 * Double(i + 1)), 1.0)
        }
    }

    func testOrderDependsOnlyOnSeedAndIndexAndCoversEveryWindowPerEpoch() throws {
        let a = try MixtureLoader(sources: [try source("s", tokens: 1601, offset: 0)],
                                  stages: [StageMixture(name: "p", weights: ["s": 1])], seqLen: 16, seed: 9)
        let b = try MixtureLoader(sources: [try source("s", tokens: 1601, offset: 0)],
                                  stages: [StageMixture(name: "p", weights: ["s": 1])], seqLen: 16, seed: 9)
        // Drawn in one go or in uneven pieces (as different world sizes and resumes would), the order is the same.
        let whole = a.nextSamples(300, stage: 0)
        var pieces: [SampleReference] = []
        for n in [7, 93, 50, 150] { pieces += b.nextSamples(n, stage: 0) }
        XCTAssertEqual(whole, pieces)
        // 100 windows of 16 tokens: each epoch of 100 draws is a permutation of all of them, and epochs differ.
        let epochs = stride(from: 0, to: 300, by: 100).map { Array(whole[$0..<($0 + 100)].map(\.start)) }
        for epoch in epochs { XCTAssertEqual(Set(epoch).count, 100) }
        XCTAssertNotEqual(epochs[0], epochs[1])
        // A restored cursor continues the same order.
        let c = try MixtureLoader(sources: [try source("s", tokens: 1601, offset: 0)],
                                  stages: [StageMixture(name: "p", weights: ["s": 1])], seqLen: 16, seed: 9)
        _ = c.nextSamples(120, stage: 0)
        let d = try MixtureLoader(sources: [try source("s", tokens: 1601, offset: 0)],
                                  stages: [StageMixture(name: "p", weights: ["s": 1])], seqLen: 16, seed: 9)
        try d.restore(c.cursor)
        XCTAssertEqual(c.nextSamples(50, stage: 0), d.nextSamples(50, stage: 0))
        // Another seed, another order.
        let e = try MixtureLoader(sources: [try source("s", tokens: 1601, offset: 0)],
                                  stages: [StageMixture(name: "p", weights: ["s": 1])], seqLen: 16, seed: 10)
        XCTAssertNotEqual(e.nextSamples(100, stage: 0).map(\.start), epochs[0])
    }
}
