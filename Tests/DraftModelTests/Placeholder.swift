import XCTest

final class DraftModelTestsPlaceholder: XCTestCase {}
