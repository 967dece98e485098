import DraftFormats
import Foundation
import XCTest

/// Compares our metadata values with `gguf_dump.py`'s JSON entries (floats as bit patterns, arrays possibly cut).
enum ReferenceJSON {
    static func assertMatches(_ value: GGUFValue, _ entry: [String: Any], key: String,
                              file: StaticString = #filePath, line: UInt = #line) {
        let ref = entry["value"]
        switch value {
        case .string(let s): XCTAssertEqual(ref as? String, s, key, file: file, line: line)
        case .bool(let b): XCTAssertEqual(ref as? Bool, b, key, file: file, line: line)
        case .float32(let f): XCTAssertEqual((ref as? NSNumber)?.uint32Value, f.bitPattern, key, file: file, line: line)
        case .float64(let f): XCTAssertEqual((ref as? NSNumber)?.uint64Value, f.bitPattern, key, file: file, line: line)
        case .uint64(let v): XCTAssertEqual((ref as? NSNumber)?.uint64Value, v, key, file: file, line: line)
        case .array(let a):
            XCTAssertEqual(entry["count"] as? Int, a.count, key, file: file, line: line)
            XCTAssertEqual(entry["element_type"] as? Int, Int(a.elementType.rawValue), key, file: file, line: line)
            if case .array = a { return }  // gguf's reader flattens nested arrays: only the header is comparable
            let refList = ref as? [Any] ?? []
            let ours: [Any]
            switch a {
            case .string(let s): ours = s
            case .bool(let b): ours = b.map { NSNumber(value: $0) }  // JSON booleans arrive as NSNumbers
            case .float32(let f): ours = f.map { NSNumber(value: $0.bitPattern) }
            case .float64(let f): ours = f.map { NSNumber(value: $0.bitPattern) }
            case .uint64(let u): ours = u.map { NSNumber(value: $0) }
            case .array: return
            default: ours = (a.integers ?? []).map { NSNumber(value: $0) }
            }
            XCTAssertEqual(refList.count, min(ours.count, refList.count), key, file: file, line: line)
            XCTAssertEqual("\(refList.prefix(ours.count).map { "\($0)" })", "\(ours.prefix(refList.count).map { "\($0)" })",
                           key, file: file, line: line)
        default:
            XCTAssertEqual((ref as? NSNumber)?.int64Value, value.integer, key, file: file, line: line)
        }
    }
}
