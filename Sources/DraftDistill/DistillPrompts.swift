import DraftErrors
import DraftInference
import Foundation

/// A prompt the target answers: its id and set as given (or made), the text the target reads, and its token ids.
public struct DistillPrompt: Sendable, Equatable {
    public var id: String
    public var set: String?
    /// The rendered prompt (chat template applied for conversations).
    public var text: String
    public var ids: [Int32]
}

/// A prompt left out of the run, and why (one of `PromptFilter.Reason`).
public struct FilteredPrompt: Codable, Sendable, Equatable {
    public var id: String
    public var reason: String
}

/// The stated filter every prompt passes before the target answers it, in this order:
/// - `empty`: no text once whitespace is trimmed (a Magpie instruction the target ended at once);
/// - `truncated`: a Magpie instruction cut off by `--max-new-tokens` instead of ended by the target;
/// - `template-echo`: the text holds chat-template markup (`<|im_start|>`, `<|user|>`, `<|start_header_id|>`, ...) or
///   opens with a role name, i.e. the target wrote template structure instead of an instruction;
/// - `duplicate`: the same text (whitespace-trimmed) as an earlier prompt, whose id is kept;
/// - `too-long`: more tokens than the target's context leaves room for with `--max-new-tokens`.
public enum PromptFilter {
    public enum Reason: String, Sendable {
        case empty, truncated, templateEcho = "template-echo", duplicate, tooLong = "too-long"
    }

    static let templateMarkers = ["<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
                                  "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|endoftext|>"]
    static let rolePrefixes = ["user\n", "assistant\n", "system\n", "user:", "assistant:", "system:"]

    /// Why `content` (an instruction or prompt text) is left out, or nil when it passes.
    public static func reason(content: String, truncated: Bool = false) -> Reason? {
        let trimmed = content.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return .empty }
        if truncated { return .truncated }
        if templateMarkers.contains(where: { content.contains($0) }) { return .templateEcho }
        let lower = trimmed.lowercased()
        if rolePrefixes.contains(where: { lower.hasPrefix($0) }) { return .templateEcho }
        return nil
    }
}

/// The content the filter and the dedup look at: raw text, or the conversation's turns joined.
func filterText(_ entry: PromptEntry) -> String {
    switch entry.content {
    case .text(let text): return text
    case .messages(let turns): return turns.map(\.content).joined(separator: "\n")
    }
}

/// Prompt entries through the filter, deduplicated, rendered and tokenized by `render`. Ids must be unique.
func selectPrompts(_ entries: [PromptEntry], maxPromptTokens: Int, source: String,
                   render: (PromptEntry) throws -> (text: String, ids: [Int32])) throws
    -> (kept: [DistillPrompt], filtered: [FilteredPrompt]) {
    var kept: [DistillPrompt] = []
    var filtered: [FilteredPrompt] = []
    var seenIDs = Set<String>()
    var seenText: [String: String] = [:]
    for entry in entries {
        guard seenIDs.insert(entry.id).inserted else {
            throw InputError("\(source): prompt id '\(entry.id)' appears twice (ids name the records of responses.jsonl, so they must be unique)")
        }
        let content = filterText(entry)
        if let reason = PromptFilter.reason(content: content) {
            filtered.append(FilteredPrompt(id: entry.id, reason: reason.rawValue))
            continue
        }
        let normalised = content.trimmingCharacters(in: .whitespacesAndNewlines)
        if let first = seenText[normalised] {
            filtered.append(FilteredPrompt(id: entry.id, reason: "\(PromptFilter.Reason.duplicate.rawValue) of \(first)"))
            continue
        }
        seenText[normalised] = entry.id
        let (text, ids) = try render(entry)
        if ids.isEmpty {
            filtered.append(FilteredPrompt(id: entry.id, reason: PromptFilter.Reason.empty.rawValue))
            continue
        }
        if ids.count > maxPromptTokens {
            filtered.append(FilteredPrompt(id: entry.id, reason: PromptFilter.Reason.tooLong.rawValue))
            continue
        }
        kept.append(DistillPrompt(id: entry.id, set: entry.set, text: text, ids: ids))
    }
    return (kept, filtered)
}

extension ChatTemplate {
    /// The conversation opening with the user's turn left open (its content not yet written): what Magpie hands the
    /// target so that it writes an instruction. Cut from a rendering at a marker, so every family the template
    /// renders gets it without a rule of its own.
    func openUserTurn() -> String {
        let marker = "\u{1}MAGPIE\u{1}"
        let rendered = render([ChatMessage(role: "user", content: marker)], addGenerationPrompt: false)
        return String(rendered[..<rendered.range(of: marker)!.lowerBound])
    }
}
