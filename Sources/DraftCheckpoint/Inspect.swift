// `swiftdraft inspect C`: a human-readable report of one checkpoint and whether it can be trusted.
import DraftModel
import Foundation

/// `swiftdraft inspect C`: metadata, the tensor table (group/name, shape, elements, checksum ok/BAD) and a final
/// `verdict:` line. `ok` is false when the file cannot be opened or any dataset fails its checksum.
public func inspectCheckpoint(_ url: URL) -> (report: String, ok: Bool) {
    var lines = ["checkpoint: \(url.path)"]
    if let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int {
        lines.append("size: \(size) bytes (\(formatMB(size)) MB)")
    }
    let reader: CheckpointReader
    do {
        reader = try CheckpointReader(url: url)
    } catch {
        lines.append("verdict: BAD, cannot be opened: \(error)")
        return (lines.joined(separator: "\n") + "\n", false)
    }

    lines.append("attributes:")
    for name in reader.attributeNames {
        if let value = reader.attributes[name] { lines.append("  \(name) = \(describe(value))") }
    }
    for group in CheckpointGroup.allCases {
        guard let values = reader.groupAttributes[group], !values.isEmpty else { continue }
        for name in values.keys.sorted() {
            if let value = values[name] { lines.append("  \(group.path)@\(name) = \(describe(value))") }
        }
    }

    if let config = try? CheckpointCodec.modelConfig(of: reader), let k = config.headVocab,
       let ids = try? reader.readInt64s(CheckpointCodec.headIDsDataset, in: .data) {
        let shown = ids.prefix(8).map(String.init).joined(separator: ", ")
        lines.append("head: \(k) of \(config.vocabSize) ids scored (model.head_vocab, ranked on source "
                     + "\(config.headVocabSource ?? "?")), /data/\(CheckpointCodec.headIDsDataset) = [\(shown)\(ids.count > 8 ? ", ..." : "")]")
    }

    let failures = reader.verifyAll()
    let failed = Set(failures.map(\.dataset.path))
    let width = max(4, reader.datasets.map { $0.path.count }.max() ?? 0)
    lines.append("datasets:")
    lines.append("  " + pad("name", width) + "  " + pad("type", 7) + "  " + pad("shape", 16) + "  " + pad("elements", 11)
                 + "  checksum")
    for info in reader.datasets {
        let status = failed.contains(info.path) ? "BAD" : "ok"
        let shape = "[" + info.shape.map(String.init).joined(separator: ", ") + "]"
        lines.append("  " + pad(info.path, width) + "  " + pad(info.elementType.rawValue, 7) + "  " + pad(shape, 16)
                     + "  " + pad(String(info.count), 11) + "  " + status)
    }
    for failure in failures { lines.append("  BAD: \(failure.error.reason)") }

    let parameters = reader.datasets.filter { $0.group == .model }.reduce(0) { $0 + $1.count }
    if failures.isEmpty {
        lines.append("verdict: OK, \(reader.datasets.count) datasets, \(parameters) model parameters, "
                     + "every \(CheckpointChecksum.algorithm) checksum matches")
    } else {
        lines.append("verdict: BAD, \(failures.count) of \(reader.datasets.count) datasets fail their checksum: "
                     + failures.map(\.dataset.path).joined(separator: ", "))
    }
    return (lines.joined(separator: "\n") + "\n", failures.isEmpty)
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

private func formatMB(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1e6) }

/// One line per value: long strings (the resolved config) are summarised, not dumped.
private func describe(_ value: CheckpointAttribute) -> String {
    func list<T>(_ values: [T]) -> String {
        let shown = values.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "[" + shown + (values.count > 8 ? ", ... (\(values.count) values)" : "") + "]"
    }
    switch value {
    case .string(let s):
        let firstLine = s.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        // One-line values (model_config's JSON, a tokenizer path) are shown whole; the config YAML is summarised.
        if s.contains("\n") || s.count > 400 {
            let lineCount = s.split(separator: "\n").count
            return "\"\(firstLine.prefix(60))...\" (\(s.utf8.count) bytes, \(lineCount) lines)"
        }
        return "\"\(s)\""
    case .int(let v): return String(v)
    case .double(let v): return String(v)
    case .ints(let v): return list(v)
    case .doubles(let v): return list(v)
    }
}
