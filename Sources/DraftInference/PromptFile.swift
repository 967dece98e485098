import DraftErrors
import Foundation

/// One prompt of a prompt file: raw text to complete, or a conversation for the chat template.
public struct PromptEntry: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        case text(String)
        case messages([ChatMessage])
    }

    public var id: String
    public var set: String?
    public var content: Content

    public init(id: String, set: String?, content: Content) {
        self.id = id
        self.set = set
        self.content = content
    }
}

/// Reads a JSONL prompt file: one object a line, `{"id", "set", "prompt"}` or `{"id", "set", "messages": [{"role",
/// "content"}]}`; blank lines are skipped. A line without `id` gets its line number.
public func readPromptFile(_ path: String) throws -> [PromptEntry] {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw InputError("--prompts \(path): cannot read it as UTF-8 text")
    }
    var entries: [PromptEntry] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { continue }
        let at = "\(path):\(number + 1)"
        guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
            throw InputError("\(at): expected a JSON object per line")
        }
        let id: String
        switch object["id"] {
        case let s as String: id = s
        case let n as NSNumber: id = n.stringValue
        case nil: id = String(number + 1)
        default: throw InputError("\(at): \"id\" must be a string or a number")
        }
        let set = object["set"] as? String
        if let prompt = object["prompt"] {
            guard let prompt = prompt as? String else { throw InputError("\(at): \"prompt\" must be a string") }
            entries.append(PromptEntry(id: id, set: set, content: .text(prompt)))
        } else if let messages = object["messages"] {
            guard let list = messages as? [[String: Any]], !list.isEmpty else {
                throw InputError("\(at): \"messages\" must be a non-empty list of {\"role\", \"content\"} objects")
            }
            var turns: [ChatMessage] = []
            for (i, message) in list.enumerated() {
                guard let role = message["role"] as? String, let content = message["content"] as? String else {
                    throw InputError("\(at): messages[\(i)] needs string \"role\" and \"content\"")
                }
                turns.append(ChatMessage(role: role, content: content))
            }
            entries.append(PromptEntry(id: id, set: set, content: .messages(turns)))
        } else {
            throw InputError("\(at): expected a \"prompt\" or a \"messages\" field")
        }
    }
    guard !entries.isEmpty else { throw InputError("--prompts \(path): no prompts in the file") }
    return entries
}
