#!/usr/bin/env python3
"""Hugging Face's `safetensors` package (numpy flavour) against SwiftDraft's safetensors code.

Usage: safetensors_check.py write FILE   writes F32, F16 and I32 tensors with safetensors.numpy.save_file and prints
                                         them as JSON (floats as float32 bit patterns)
       safetensors_check.py read FILE    prints what safetensors.numpy.load_file reads, in the same JSON form
JSON: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "values"}}}.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def describe(arrays, metadata):
    out = {"metadata": metadata or {}, "tensors": {}}
    for name, a in arrays.items():
        if a.dtype == np.float32 or a.dtype == np.float16:
            values = a.astype(np.float32).reshape(-1).view(np.uint32).tolist()
        else:
            values = a.reshape(-1).astype(np.int64).tolist()
        out["tensors"][name] = {"dtype": {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
                                          np.dtype(np.int32): "I32"}[a.dtype],
                                "shape": list(a.shape), "values": values}
    return out


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        rng = np.random.default_rng(0)
        arrays = {"model.embed_tokens.weight": rng.standard_normal((3, 4)).astype(np.float32),
                  "model.norm.weight": (rng.standard_normal(5) * 100).astype(np.float16),
                  "ids": np.arange(-3, 3, dtype=np.int32).reshape(2, 3)}
        metadata = {"format": "np"}
        save_file(arrays, path, metadata=metadata)
    else:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata()
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    print(json.dumps(describe(arrays, metadata)))


if __name__ == "__main__":
    main()
