#!/usr/bin/env python3
"""gguf.quants (the `gguf` package's numpy reference of ggml's block types) over files a SwiftDraft test writes.

Usage: gguf_quants.py DIR. DIR/manifest.json is a list of {"op": "dequantize" | "quantize", "type": ggml type id,
"input": file, "output": file}. dequantize reads raw blocks and writes float32 little-endian values; quantize reads
float32 values and writes the blocks gguf.quants.quantize makes. Prints {"done": [...]} naming what it wrote, or
{"unsupported": [...]} entries for types the package cannot quantize.
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize


def main():
    root = sys.argv[1]
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    done, unsupported = [], []
    for job in manifest:
        qtype = GGMLQuantizationType(job["type"])
        block, size = GGML_QUANT_SIZES[qtype]
        data = np.fromfile(os.path.join(root, job["input"]), dtype=np.uint8)
        if job["op"] == "dequantize":
            rows = data.reshape(-1, size)  # one block per row: any row length is a whole number of blocks
            out = np.asarray(dequantize(rows, qtype), dtype=np.float32).reshape(-1)
        else:
            values = data.view(np.float32).reshape(-1, block)
            try:
                out = np.asarray(quantize(values, qtype)).view(np.uint8).reshape(-1)
            except NotImplementedError:
                unsupported.append(job["output"])
                continue
        out.tofile(os.path.join(root, job["output"]))
        done.append(job["output"])
    print(json.dumps({"done": done, "unsupported": unsupported}))


if __name__ == "__main__":
    main()
