import Foundation

/// A duration for progress lines and ETAs, as the trainer, `distill` and `speculate` print them: `1h02m`, `3m12s`,
/// `45s` (`?` for a negative or non-finite one).
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
