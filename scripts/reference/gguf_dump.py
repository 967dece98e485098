#!/usr/bin/env python3
"""What the `gguf` Python package (gguf.GGUFReader, llama.cpp's own reader) reads from a GGUF file, as JSON on stdout.

Usage: gguf_dump.py FILE [--values] [--max-array N]

Prints {"version", "alignment", "data_offset", "metadata": [{"key", "type", "element_type"?, "count"?, "value"}],
"tensors": [{"name", "dims" (ne0 first), "type" (ggml id), "offset" (relative to the data section), "n_bytes",
"checksum" of the tensor's bytes (sum of byte * (index % 65521 + 1), modulo 2^64), "values"? (gguf.quants.dequantize as float32 bit patterns)}]}. SwiftDraft's tests
compare this with what its own reader and writer hold. Arrays longer than --max-array are cut (count stays exact).
"""
import argparse
import json
import struct

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize


def field_entry(field, max_array):
    main = field.types[0]
    entry = {"key": field.name, "type": int(main)}
    if main == GGUFValueType.ARRAY:
        # The array header (parts 3 and 4, after the key length, key and value type), exact even for empty arrays,
        # whose `types` lack the element type.
        entry["element_type"] = int(field.parts[3][0])
        entry["count"] = int(field.parts[4][0])
        if entry["element_type"] == GGUFValueType.ARRAY:  # arrays of arrays: the reader flattens them
            entry["value"] = None
            return entry
        values = field.contents(slice(0, max_array))
    else:
        values = field.contents()
    if main == GGUFValueType.FLOAT32 or (main == GGUFValueType.ARRAY and field.types[-1] == GGUFValueType.FLOAT32):
        # Bit patterns, so JSON's decimal floats lose nothing.
        pack = lambda v: struct.unpack("<I", struct.pack("<f", v))[0]  # noqa: E731
        values = [pack(v) for v in values] if isinstance(values, list) else pack(values)
    elif main == GGUFValueType.FLOAT64 or (main == GGUFValueType.ARRAY and field.types[-1] == GGUFValueType.FLOAT64):
        pack = lambda v: struct.unpack("<Q", struct.pack("<d", v))[0]  # noqa: E731
        values = [pack(v) for v in values] if isinstance(values, list) else pack(values)
    entry["value"] = values
    return entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--values", action="store_true")
    ap.add_argument("--max-array", type=int, default=1 << 62)
    args = ap.parse_args()
    reader = GGUFReader(args.file)
    out = {"alignment": int(reader.alignment), "data_offset": int(reader.data_offset), "metadata": [], "tensors": []}
    for name, field in reader.fields.items():
        if name == "GGUF.version":
            out["version"] = int(field.contents())
        elif not name.startswith("GGUF."):
            out["metadata"].append(field_entry(field, args.max_array))
    for t in reader.tensors:
        raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
        weights = np.arange(raw.size, dtype=np.uint64) % np.uint64(65521) + np.uint64(1)
        entry = {"name": t.name, "dims": [int(d) for d in t.shape], "type": int(t.tensor_type),
                 "offset": int(t.data_offset - reader.data_offset), "n_bytes": int(t.n_bytes),
                 "checksum": int(np.sum(raw.astype(np.uint64) * weights, dtype=np.uint64))}
        if args.values:
            floats = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
            entry["values"] = floats.view(np.uint32).tolist()
        out["tensors"].append(entry)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
