import Foundation
import XCTest

/// `swiftdraft encode` / `decode` against Hugging Face `tokenizers` on the SmolLM2 tokenizer.json that
/// scripts/fetch-assets.sh makes.
final class EncodeDecodeTests: XCTestCase {
    /// Strings and the ids `tokenizers` 0.23.3 gives them (`encode(s, add_special_tokens=False)`): whitespace runs,
    /// digits split one by one, multi-byte UTF-8 and emoji, and special tokens written in the text.
    static let reference: [(String, [Int32])] = [
        ("Hello, world!", [19556, 28, 905, 17]),
        ("def f(x):\n    return x + 1\n", [1604, 275, 24, 104, 727, 472, 1003, 1792, 1232, 216, 33, 198]),
        ("  multiple   spaces\tand tabs\n\n", [216, 2701, 256, 5600, 197, 397, 29416, 1116]),
        ("Ünïcödé — naïve café 日本語 🙂", [142, 246, 94, 25972, 83, 7466, 84, 2756, 1841, 15486, 46494, 37366, 17097,
                                          241, 115, 40993, 179, 120, 248, 47526]),
        ("Pi is 3.14159, year 2024.", [41967, 314, 216, 35, 30, 33, 36, 33, 37, 41, 28, 713, 216, 34, 32, 34, 36, 30]),
        ("<|im_start|>user\nhi<|im_end|>", [1, 4093, 198, 6004, 2]),
    ]

    private var cache: URL {
        if let c = ProcessInfo.processInfo.environment["SWIFTDRAFT_CACHE"], !c.isEmpty {
            return URL(fileURLWithPath: (c as NSString).expandingTildeInPath)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/swiftdraft")
    }

    private func smolTokenizer() throws -> String {
        let path = cache.appendingPathComponent("tokenizers/smollm2/tokenizer.json").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("\(path) missing: run scripts/fetch-assets.sh first")
        }
        return path
    }

    private func ids(_ stdout: String) -> [Int32] {
        stdout.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
    }

    func testEncodeAndDecodeMatchTokenizersReference() throws {
        let tokenizer = try smolTokenizer()
        for (text, expected) in Self.reference {
            let e = try CLI.run(["encode", "--tokenizer", tokenizer, "--text", text])
            XCTAssertEqual(e.status, 0, e.stderr)
            XCTAssertEqual(e.stdout.filter { $0 == "\n" }.count, 1, "one line: \(e.stdout)")
            XCTAssertEqual(ids(e.stdout), expected, "encode \(text.debugDescription)")
            let d = try CLI.run(["decode", "--tokenizer", tokenizer, "--ids", expected.map(String.init).joined(separator: " ")])
            XCTAssertEqual(d.status, 0, d.stderr)
            XCTAssertEqual(d.stdout, text, "decode of \(expected)")
        }
    }

    /// When `tokenizers` is importable, the same comparison runs live on a longer text read from a file, so a
    /// change on either side shows up beyond the fixed strings.
    func testEncodeFileMatchesLiveTokenizers() throws {
        let tokenizer = try smolTokenizer()
        let source = "/usr/lib/python3.11/bisect.py"
        guard FileManager.default.fileExists(atPath: source) else { throw XCTSkip("\(source) not present") }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // The venv launch/test.sh exports (scripts/python-env.sh) has tokenizers; by hand, python3 may not.
        let interpreter = ProcessInfo.processInfo.environment["SWIFTDRAFT_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        python.arguments = [interpreter, "-c", """
            import sys
            from tokenizers import Tokenizer
            t = Tokenizer.from_file(sys.argv[1])
            print(" ".join(map(str, t.encode(open(sys.argv[2], encoding="utf-8").read(), add_special_tokens=False).ids)))
            """, tokenizer, source]
        let out = Pipe()
        python.standardOutput = out
        python.standardError = Pipe()
        try python.run()
        let reference = out.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit()
        guard python.terminationStatus == 0 else {
            if interpreter != "python3" { return XCTFail("\(interpreter) could not encode with tokenizers (SWIFTDRAFT_PYTHON)") }
            throw XCTSkip("python3 with the 'tokenizers' package not available (set SWIFTDRAFT_PYTHON, see scripts/python-env.sh)")
        }
        let expected = ids(String(decoding: reference, as: UTF8.self))
        XCTAssertGreaterThan(expected.count, 100)
        let e = try CLI.run(["encode", "--tokenizer", tokenizer, "--file", source])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertEqual(ids(e.stdout), expected)
        let d = try CLI.run(["decode", "--tokenizer", tokenizer, "--ids", expected.map(String.init).joined(separator: " ")])
        XCTAssertEqual(d.stdout, try String(contentsOfFile: source, encoding: .utf8))
    }

    /// The byte tokenizer needs no assets: ids are the UTF-8 bytes.
    func testBytesTokenizerRoundTrip() throws {
        let e = try CLI.run(["encode", "--tokenizer", "bytes", "--text", "hé"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertEqual(e.stdout, "104 195 169\n")
        let d = try CLI.run(["decode", "--tokenizer", "bytes", "--ids", "104 195 169"])
        XCTAssertEqual(d.stdout, "hé")
    }

    func testBadIdsAndInputsAreOneLineExitTwo() throws {
        for arguments in [["decode", "--tokenizer", "bytes", "--ids", "104 nine"],
                          ["decode", "--tokenizer", "bytes", "--ids", "104 264"],
                          ["decode", "--tokenizer", "bytes", "--ids=-1"],
                          ["encode", "--tokenizer", "bytes", "--text", "a", "--file", "/etc/hostname"],
                          ["encode", "--tokenizer", "bytes", "--file", "/nonexistent/text.txt"],
                          ["encode", "--tokenizer", "/nonexistent/tokenizer.json", "--text", "a"]] {
            let r = try CLI.run(arguments)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(whereSeparator: \.isNewline).count, 1, "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty, "\(arguments): nothing on stdout")
        }
    }
}
