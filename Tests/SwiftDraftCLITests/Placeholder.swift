import XCTest

final class SwiftDraftCLITestsPlaceholder: XCTestCase {}
