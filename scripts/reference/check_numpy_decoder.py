#!/usr/bin/env python3
"""Checks numpy_decoder.py (the reference the per-type GGUF tests compare against) on the committed tiny models:
its logits on each F16 GGUF (converted by llama.cpp) against transformers' logits of the same model's HF directory
(committed by inference_fixtures.py). numpy + gguf only. Exit 1 when any max |diff| exceeds 1e-4.

    python scripts/reference/check_numpy_decoder.py
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from numpy_decoder import Model  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "Tests/DraftInferenceTests/Fixtures"


def main():
    manifest = json.loads((FIXTURES / "tiny/manifest.json").read_text())
    vocab, seqs = manifest["vocab"], manifest["sequences"]
    worst = 0.0
    for name, m in manifest["models"].items():
        ref = np.frombuffer((FIXTURES / m["logits"]).read_bytes(), dtype="<f4")
        model = Model(str(FIXTURES / m["gguf"]))
        offset, diff = 0, 0.0
        for s in seqs:
            n = len(s) * vocab
            expected = ref[offset:offset + n].reshape(len(s), vocab)
            offset += n
            diff = max(diff, float(np.abs(model.forward(np.array(s)) - expected).max()))
        scale = float(np.abs(ref).max())
        print(f"{name}: numpy_decoder(F16 GGUF) vs transformers(HF dir): max |diff| {diff:.2e} (logits up to {scale:.2f})")
        worst = max(worst, diff)
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
