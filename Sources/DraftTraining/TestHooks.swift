import Foundation

/// Test-only environment hooks, read once. Each makes a failure mode reproducible in an end-to-end test; none changes
/// anything when unset.
enum TestHooks {
    /// `SWIFTDRAFT_TEST_STEP_DELAY_S`: sleep after each step, so a signal can land mid-run in a test.
    static let stepDelay: Double = value("SWIFTDRAFT_TEST_STEP_DELAY_S").flatMap(Double.init) ?? 0
    /// `SWIFTDRAFT_TEST_NAN_STEPS=a,b-c`: global steps (1-based) whose gradients are poisoned with NaN on every rank,
    /// to exercise the skip-and-stop path.
    static let nanSteps: Set<Int> = {
        guard let text = value("SWIFTDRAFT_TEST_NAN_STEPS") else { return [] }
        var steps = Set<Int>()
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 1 { steps.insert(bounds[0]) }
            if bounds.count == 2, bounds[0] <= bounds[1] { steps.formUnion(bounds[0]...bounds[1]) }
        }
        return steps
    }()

    /// `SWIFTDRAFT_TEST_PEAK_GFLOPS`: the start's peak measurement reads this instead, as one on a busy machine would
    /// (too low), to exercise the re-measurement that keeps MFU at or below 1.
    static let startPeakGFLOPs: Double? = value("SWIFTDRAFT_TEST_PEAK_GFLOPS").flatMap(Double.init)

    private static func value(_ name: String) -> String? { ProcessInfo.processInfo.environment[name] }
}
