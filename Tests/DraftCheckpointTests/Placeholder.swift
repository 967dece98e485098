import XCTest

final class DraftCheckpointTestsPlaceholder: XCTestCase {}
