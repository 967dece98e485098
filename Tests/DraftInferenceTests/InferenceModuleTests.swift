import DraftInference
import XCTest

final class InferenceModuleTests: XCTestCase {
    func testModuleLinks() {}
}
