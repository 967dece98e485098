import DraftErrors
import Foundation

/// One turn of a conversation, as prompt files and chat templates spell it.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A chat template that is not one of the families SwiftDraft renders, or a model without one.
public struct ChatTemplateError: BadInputError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The chat format of an instruct model, recognised from its Jinja template text (GGUF `tokenizer.chat_template` or
/// `tokenizer_config.json`) and rendered natively: SwiftDraft runs no Jinja, so each family below is the rendering of
/// the template that family ships, checked against `transformers`' `apply_chat_template` output.
///
/// - ChatML (SmolLM2, Qwen2): `<|im_start|>role\ncontent<|im_end|>\n` per turn, `<|im_start|>assistant\n` to
///   generate; a default system turn when the template inserts one (SmolLM2's "You are a helpful AI assistant...").
/// - Llama-3: `<|begin_of_text|>` then `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` with the
///   content trimmed; Llama-3.1's templates also open with a system turn carrying the knowledge-cutoff date lines.
/// - Phi-3: `<|role|>\ncontent<|end|>\n` per turn, `<|assistant|>\n` to generate.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable {
        case chatML = "ChatML", llama3 = "Llama-3", phi3 = "Phi-3"
    }

    public let family: Family
    /// The system turn the template adds when the conversation has none (ChatML only).
    public let defaultSystemPrompt: String?
    /// Text the template emits before the first turn (its `bos_token`), when it emits one.
    public let prefix: String
    /// Llama-3.1: a system turn with the date lines always opens the conversation.
    let llamaDatePreamble: Bool

    /// Recognises `template`; `bosToken` is the text of the model's BOS token, for templates that start with it.
    public init(template: String, bosToken: String? = nil) throws {
        let startsWithBOS = template.range(of: #"^\s*\{\{-?\s*bos_token"#, options: .regularExpression) != nil
        if template.contains("<|im_start|>") {
            family = .chatML
            defaultSystemPrompt = ChatTemplate.literalSystemTurn(in: template)
            llamaDatePreamble = false
            prefix = startsWithBOS ? bosToken ?? "" : ""
        } else if template.contains("<|start_header_id|>") {
            family = .llama3
            defaultSystemPrompt = nil
            llamaDatePreamble = template.contains("Cutting Knowledge Date")
            prefix = template.contains("bos_token") ? bosToken ?? "<|begin_of_text|>" : ""
        } else if template.contains("<|user|>") && template.contains("<|end|>") {
            family = .phi3
            defaultSystemPrompt = nil
            llamaDatePreamble = false
            prefix = startsWithBOS ? bosToken ?? "" : ""
        } else {
            let opening = template.prefix(60).replacingOccurrences(of: "\n", with: "\\n")
            throw ChatTemplateError("unknown chat template '\(opening)\(template.count > 60 ? "..." : "")': SwiftDraft renders ChatML, Llama-3 and Phi-3 templates")
        }
    }

    /// The prompt text for `messages`, ending with the assistant's opening when `addGenerationPrompt`.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var text = prefix
        switch family {
        case .chatML:
            if let system = defaultSystemPrompt, messages.first?.role != "system" {
                text += "<|im_start|>system\n\(system)<|im_end|>\n"
            }
            for message in messages { text += "<|im_start|>\(message.role)\n\(message.content)<|im_end|>\n" }
            if addGenerationPrompt { text += "<|im_start|>assistant\n" }
        case .llama3:
            var turns = messages[...]
            if llamaDatePreamble {
                var system = ""
                if turns.first?.role == "system" {
                    system = turns.removeFirst().content.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                text += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\(system)<|eot_id|>"
            }
            for message in turns {
                let content = message.content.trimmingCharacters(in: .whitespacesAndNewlines)
                text += "<|start_header_id|>\(message.role)<|end_header_id|>\n\n\(content)<|eot_id|>"
            }
            if addGenerationPrompt { text += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .phi3:
            for message in messages { text += "<|\(message.role)|>\n\(message.content)<|end|>\n" }
            if addGenerationPrompt { text += "<|assistant|>\n" }
        }
        return text
    }

    /// The system turn a ChatML template writes literally when the first message is not a system message: the text
    /// between `<|im_start|>system\n` and `<|im_end|>` inside a quoted string (Jinja `\n` escapes or raw newlines).
    private static func literalSystemTurn(in template: String) -> String? {
        guard template.contains("!= 'system'") || template.contains("!= \"system\"") else { return nil }
        for newline in ["\\n", "\n"] {
            let opening = "<|im_start|>system" + newline
            guard let start = template.range(of: opening),
                  let end = template.range(of: "<|im_end|>", range: start.upperBound..<template.endIndex) else { continue }
            let body = String(template[start.upperBound..<end.lowerBound])
            // A template that concatenates the system message's content is not a literal default.
            if body.contains("'") || body.contains("\"") || body.contains("{") { continue }
            return body.replacingOccurrences(of: "\\n", with: "\n")
        }
        return nil
    }
}
