import XCTest

final class DraftTokenizerTestsPlaceholder: XCTestCase {}
