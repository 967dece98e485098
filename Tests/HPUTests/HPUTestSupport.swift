import DraftDevice
import Foundation
import XCTest

/// Where the package built the stub plugin: the directory of the running test binary, which SwiftPM puts in the
/// same build directory as the products (`.build/<triple>/release/`).
func builtStubPath(file: StaticString = #filePath, line: UInt = #line) throws -> String {
    var directories: [URL] = []
    let bundle = Bundle(for: HPUTestAnchor.self).bundleURL
    directories.append(bundle.deletingLastPathComponent())
    directories.append(bundle)
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
    }
    for directory in directories {
        let candidate = directory.appendingPathComponent(HPUPlugin.stubFileName).path
        if FileManager.default.fileExists(atPath: candidate) { return candidate }
    }
    throw XCTSkip("\(HPUPlugin.stubFileName) not found next to the test bundle (looked in "
                  + directories.map(\.path).joined(separator: ", ") + "); build it with `swift build` first",
                  file: file, line: line)
}

private final class HPUTestAnchor {}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("hpu-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Deterministic random numbers, so a failing comparison reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    mutating func floats(_ count: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &self) }
    }
}

/// `max |actual - expected| / max |expected|`: relative to the tensor's scale, so elements near zero do not
/// dominate the way an elementwise relative difference would.
func relativeDifference(_ actual: [Float], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count, "length mismatch \(actual.count) vs \(expected.count)")
    var maxDiff = 0.0, maxRef = 0.0
    for (a, e) in zip(actual, expected) {
        if a.isNaN != e.isNaN { return .infinity }
        maxDiff = max(maxDiff, abs(Double(a) - e))
        maxRef = max(maxRef, abs(e))
    }
    return maxDiff / max(maxRef, 1e-30)
}

func assertClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 1e-5, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    let difference = relativeDifference(actual, expected)
    if ProcessInfo.processInfo.environment["HPU_TEST_VERBOSE"] != nil {
        print("relative difference \(what): \(difference)")
    }
    XCTAssertLessThanOrEqual(difference, tolerance, "\(what): relative difference \(difference)", file: file, line: line)
}
