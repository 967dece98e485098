#!/usr/bin/env python3
"""Every vocabulary entry that Hugging Face `tokenizers` encodes back to itself alone.

  single_token_entries.py TOKENIZER_JSON

For each id of the tokenizer.json, its text is `decode([id])`; the id is listed when `encode(text,
add_special_tokens=False)` is exactly `[id]`. One line per listed id on stdout: `id<TAB>hex of the text's UTF-8`
(hex, so blanks, newlines and canonically equivalent spellings survive intact). The SwiftDraft test
(Tests/DraftTokenizerTests/VocabularyEntryTests.swift) runs this through the test venv and encodes the same texts.
"""
import sys

from tokenizers import Tokenizer


def main():
    if len(sys.argv) != 2:
        print("usage: single_token_entries.py TOKENIZER_JSON", file=sys.stderr)
        return 2
    tok = Tokenizer.from_file(sys.argv[1])
    size = tok.get_vocab_size(with_added_tokens=True)
    ids = list(range(size))
    texts = [tok.decode([i], skip_special_tokens=False) for i in ids]
    encoded = tok.encode_batch(texts, add_special_tokens=False)
    out = sys.stdout
    for i, text, enc in zip(ids, texts, encoded):
        if text and enc.ids == [i]:
            out.write(f"{i}\t{text.encode('utf-8').hex()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
