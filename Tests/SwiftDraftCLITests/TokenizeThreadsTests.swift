import Foundation
import XCTest

/// `SWIFTDRAFT_THREADS` sets how many workers `tokenize` encodes with, and the shards do not depend on it.
final class TokenizeThreadsTests: XCTestCase {
    func testShardsAreIdenticalForAnyThreadCount() throws {
        let inputs = ["/usr/lib/python3.11/json", "/usr/lib/python3.11/email"]
        guard inputs.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else { throw XCTSkip("CPython sources not present") }
        let cache = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"].map { ($0 as NSString).expandingTildeInPath }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft").path
        let smol = cache + "/tokenizers/smollm2/tokenizer.json"
        // The real BPE when it is cached (slower per document, so ordering bugs would show), else bytes.
        let tokenizer = FileManager.default.fileExists(atPath: smol) ? smol : "bytes"
        let work = try CLI.temporaryDirectory("threads")
        defer { try? FileManager.default.removeItem(at: work) }
        var shards: [Data] = []
        for threads in ["1", "3"] {
            let output = work.appendingPathComponent("out-\(threads)")
            let r = try CLI.run(["tokenize", "--tokenizer", tokenizer, "--input"] + inputs + ["--output", output.path,
                                 "--val-fraction", "0.1"], environment: ["SWIFTDRAFT_THREADS": threads])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("\(threads) threads"), r.stdout)
            shards.append(try Data(contentsOf: output.appendingPathComponent("train-000000.bin")) +
                          Data(contentsOf: output.appendingPathComponent("val-000000.bin")))
        }
        XCTAssertEqual(shards[0], shards[1])
    }
}
