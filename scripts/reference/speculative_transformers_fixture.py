#!/usr/bin/env python3
"""The speculative-decoding reference through transformers, recorded as a fixture (CI has no torch).

Target and draft are loaded by transformers from their GGUF files (`from_pretrained(..., gguf_file=...)`, which
dequantizes to float32): SmolLM2-135M-Instruct Q4_1 and, as the draft, the same model requantized to Q4_0 by
`llama-quantize --allow-requantize` (what `SmolLM2SpeculationTests` makes at test time; its SHA-256 is recorded so the
test knows it measures the same draft). Leviathan's rule is `speculative_reference.speculate`, the numpy reference's
round, here over transformers' logits (each call recomputes the whole sequence: slow, and simple enough to trust).

    ~/.cache/swiftdraft/ref-venv/bin/python scripts/reference/speculative_transformers_fixture.py \
        --draft /tmp/smollm2-q4_0.gguf [--seeds 3] [--out Tests/DraftInferenceTests/Fixtures/speculative-transformers.json]

The prompts are `SmolLM2SpeculationTests.texts`, tokenized by the target's tokenizer (their ids are recorded too).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speculative_reference import speculate  # noqa: E402

TEXTS = [
    "The history of the city begins with", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.",
    "She opened the letter and read", "In the morning the ships left the harbour",
    "import numpy as np\n\ndef normalize(x):", "The three most important rules of cooking are",
    "Once upon a time, in a small village,", "for i in range(10):\n    if i % 2 == 0:",
    "The committee met on Tuesday to discuss", "Water boils at a lower temperature on a mountain because",
]


class TransformersDecoder:
    """The interface `speculate` drives (reset, length, trim, forward of appended ids) over a transformers model."""

    def __init__(self, path):
        self.model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                          torch_dtype=torch.float32).eval()
        self.ids = []

    def reset(self):
        self.ids = []

    @property
    def length(self):
        return len(self.ids)

    def trim(self, n):
        self.ids = self.ids[:n]

    @torch.no_grad()
    def forward(self, new):
        start = len(self.ids)
        self.ids = self.ids + [int(t) for t in new]
        logits = self.model(torch.tensor([self.ids])).logits[0]
        return logits[start:].double().numpy()


def main():
    cache = os.environ.get("SWIFTDRAFT_CACHE", os.path.expanduser("~/.cache/swiftdraft"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=os.path.join(cache, "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--draft", required=True)
    ap.add_argument("--gamma", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="Tests/DraftInferenceTests/Fixtures/speculative-transformers.json")
    a = ap.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(cache, "tokenizers/smollm2"))
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in TEXTS]
    stops = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
    target, draft = TransformersDecoder(a.target), TransformersDecoder(a.draft)
    rng = np.random.default_rng(2024)
    per_prompt = []
    for ids in prompts:
        proposed = accepted = 0
        for _ in range(a.seeds):
            counts, _ = speculate(target, draft, ids, a.gamma, a.temperature, a.max_new_tokens, stops, rng)
            proposed += counts["proposed"]
            accepted += counts["accepted"]
        per_prompt.append([proposed, accepted])
        print("prompt %d: %d of %d" % (len(per_prompt), accepted, proposed), file=sys.stderr)
    with open(a.draft, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    record = {"tool": "transformers %s, torch %s" % (__import__("transformers").__version__, torch.__version__),
              "draft_sha256": digest, "gamma": a.gamma, "temperature": a.temperature,
              "max_new_tokens": a.max_new_tokens, "seeds": a.seeds, "prompt_ids": prompts, "per_prompt": per_prompt}
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    total = np.array(per_prompt).sum(axis=0)
    print("transformers reference: %d of %d accepted (%.3f)" % (total[1], total[0], total[1] / total[0]), file=sys.stderr)


if __name__ == "__main__":
    main()
