#!/usr/bin/env python3
"""Re-write a GGUF model with another tensor type, metadata unchanged: the same model converted, as a user would.

  rewrite_gguf.py IN.gguf OUT.gguf [f16|f32]

Every key/value pair is copied as it is (tokenizer included); every tensor is dequantized with the `gguf` package and
written as F16 (default) or F32, so the file's bytes and size change completely while its tokenizer does not. The
fingerprint test (Tests/DraftTokenizerTests/FingerprintTests.swift) runs this through the test venv.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize


def main():
    if len(sys.argv) not in (3, 4):
        print("usage: rewrite_gguf.py IN.gguf OUT.gguf [f16|f32]", file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    dtype = np.float16 if (sys.argv[3] if len(sys.argv) == 4 else "f16") == "f16" else np.float32
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the header's own counts, and the key GGUFWriter writes itself
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type)
        if t.tensor_type == GGMLQuantizationType.F16 and dtype == np.float16:
            raise SystemExit(f"{src}: tensor {t.name} is already F16; ask for f32")
        writer.add_tensor(t.name, np.ascontiguousarray(values.astype(dtype)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
