import DraftErrors
import DraftFormats
import XCTest

final class FormatErrorTests: XCTestCase {
    func testFormatErrorIsBadInput() {
        let error: Error = FormatError("x.gguf: truncated at byte 12 (expected the version)")
        XCTAssertTrue(error is any BadInputError)
        XCTAssertEqual("\(error)", "x.gguf: truncated at byte 12 (expected the version)")
    }
}
