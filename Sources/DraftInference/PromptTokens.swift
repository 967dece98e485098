import DraftErrors

extension LoadedModel {
    /// A prompt's token ids as this model reads it: a conversation (or, with `chat`, a raw prompt as one user turn)
    /// through the model's chat template, whose text carries any BOS; raw text with BOS when the model adds it.
    public func promptTokens(_ entry: PromptEntry, chat: Bool) throws -> [Int32] {
        let messages: [ChatMessage]
        switch entry.content {
        case .text(let text) where !chat:
            let ids = tokenizer.encode(text)
            guard !ids.isEmpty else { throw InputError("prompt '\(entry.id)' is empty") }
            if config.addsBOS, let bos = config.bosTokenID { return [bos] + ids }
            return ids
        case .text(let text): messages = [ChatMessage(role: "user", content: text)]
        case .messages(let turns): messages = turns
        }
        guard let source = chatTemplate else {
            throw InputError("--chat: \(self.source) has no chat template (no tokenizer.chat_template / tokenizer_config.json chat_template)")
        }
        let bosText = config.bosTokenID.map { tokenizer.decode([$0]) }
        let template = try ChatTemplate(template: source, bosToken: bosText)
        return tokenizer.encode(template.render(messages))
    }
}
