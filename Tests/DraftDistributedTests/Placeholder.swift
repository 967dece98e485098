import XCTest

final class DraftDistributedTestsPlaceholder: XCTestCase {}
