import XCTest

final class HPUTestsPlaceholder: XCTestCase {}
