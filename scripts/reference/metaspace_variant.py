#!/usr/bin/env python3
"""The Phi-3 tokenizer.json rewritten to use a Metaspace pre-tokenizer and decoder (as newer Llama/Mistral files do)
instead of the Prepend/Replace normalizers, plus Hugging Face tokenizers' ids for every llama.cpp Phi-3 test string.

    python3 scripts/reference/metaspace_variant.py PHI3_TOKENIZER_JSON VECTORS_INP SCHEME OUT_DIR

Writes OUT_DIR/tokenizer.json and OUT_DIR/ids.txt (one line of space-separated ids per test string). The Swift test
runs it live (it needs `tokenizers`) and checks its own ids on the rewritten file against ids.txt.
"""
import json
import os
import sys

from tokenizers import Tokenizer

src, inp, scheme, out = sys.argv[1:5]
j = json.load(open(src, encoding="utf-8"))
j["normalizer"] = None
meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": scheme != "never"}
j["pre_tokenizer"] = meta
j["decoder"] = meta
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(j, f, ensure_ascii=False)
tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
cases = open(inp, encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
with open(os.path.join(out, "ids.txt"), "w") as f:
    for c in cases:
        f.write(" ".join(str(i) for i in tok.encode(c, add_special_tokens=False).ids) + "\n")
