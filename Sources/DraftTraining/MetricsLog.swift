import DraftFormats
import Foundation

/// `metrics.jsonl` of a run: one JSON object per logged step, plus `event` lines. Only rank 0 writes it.
///
/// Each line is written with a single `write(2)` on a file opened for appending, so a crash leaves whole lines and a
/// resumed run continues the same file. With a TensorBoard directory the same numbers also go to an event file there:
/// a step line's numeric fields as `train/<field>`, an `eval` event's losses as `val_loss/<source>`.
public final class MetricsLog {
    private let handle: FileHandle?
    private var tensorboard: TensorBoardEventFile?

    public convenience init(path: String?, tensorboardDirectory: URL?) throws {
        try self.init(path: path)
        if let tensorboardDirectory { tensorboard = try TensorBoardEventFile(directory: tensorboardDirectory) }
    }

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
        if let tensorboard { Self.mirror(fields, to: tensorboard) }
        guard let handle else { return }
        let body = fields.map { key, value in "\"\(key)\":\(Self.json(value))" }.joined(separator: ",")
        handle.write(Data("{\(body)}\n".utf8))
    }

    private static func mirror(_ fields: [(String, Any)], to file: TensorBoardEventFile) {
        guard let step = fields.first(where: { $0.0 == "step" })?.1 as? Int else { return }
        let event = fields.first(where: { $0.0 == "event" })?.1 as? String
        var scalars: [(tag: String, value: Double)] = []
        switch event {
        case nil:
            for (key, value) in fields where key != "step" {
                switch value {
                case let v as Double where v.isFinite: scalars.append(("train/\(key)", v))
                case let v as Int: scalars.append(("train/\(key)", Double(v)))
                default: break
                }
            }
        case "eval"?:
            for (_, value) in fields {
                guard let losses = value as? [String: Double] else { continue }
                for source in losses.keys.sorted() { scalars.append(("val_loss/\(source)", losses[source]!)) }
            }
        default:
            return
        }
        file.scalars(scalars, step: step)
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
