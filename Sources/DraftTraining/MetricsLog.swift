import Foundation

/// `metrics.jsonl` of a run: one JSON object per logged step, plus `event` lines. Only rank 0 writes it.
///
/// Each line is written with a single `write(2)` on a file opened for appending, so a crash leaves whole lines and a
/// resumed run continues the same file.
public final class MetricsLog {
    private let handle: FileHandle?

    public init(path: String?) throws {
        guard let path else {
            handle = nil
            return
        }
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ConfigError("\(path): cannot open metrics file for writing")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle?.close() }

    public func write(_ fields: [(String, Any)]) {
        guard let handle else { return }
        let body = fields.map { key, value in "\"\(key)\":\(Self.json(value))" }.joined(separator: ",")
        handle.write(Data("{\(body)}\n".utf8))
    }

    public func event(_ name: String, _ fields: [(String, Any)]) {
        write([("event", name)] + fields)
    }

    static func json(_ value: Any) -> String {
        switch value {
        case let v as String:
            let escaped = v.unicodeScalars.map { scalar -> String in
                switch scalar {
                case "\"": return "\\\""
                case "\\": return "\\\\"
                case "\n": return "\\n"
                case "\t": return "\\t"
                default: return scalar.value < 0x20 ? String(format: "\\u%04x", scalar.value) : String(scalar)
                }
            }.joined()
            return "\"\(escaped)\""
        case let v as Int: return String(v)
        case let v as Bool: return v ? "true" : "false"
        case let v as Double: return v.isFinite ? String(format: "%.9g", v) : "null"
        case let v as Float: return v.isFinite ? String(format: "%.7g", v) : "null"
        case let v as [String: Double]:
            return "{" + v.keys.sorted().map { "\(json($0)):\(json(v[$0]!))" }.joined(separator: ",") + "}"
        default: return "null"
        }
    }
}

/// `1h02m`, `3m12s`, `45s`.
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
