#!/usr/bin/env bash
# Single-threaded tokenize speed: `swiftdraft tokenize` (SWIFTDRAFT_THREADS=1) against Hugging Face `tokenizers`
# (RAYON_NUM_THREADS=1, encode_batch without special tokens) on the same UTF-8 files, alternating, several rounds;
# prints MB/s of each per round, the ratio ours/HF, and the median ratio.
#
#   scripts/bench-tokenize.sh [INPUT_DIR_OR_FILE...]      (default: /usr/lib/python3.11, CPython's stdlib)
#   env: ROUNDS (default 5), TOKENIZER (default: the SmolLM2 tokenizer.json made by scripts/fetch-assets.sh),
#        SWIFTDRAFT_BIN (default: build .build/release/swiftdraft), PYTHON (default python3)
#
# Ours is timed end to end (walking, reading, encoding and writing the shards); HF's time is its encode call alone,
# after the files are in memory, so the ratio leans in HF's favour. Without the `tokenizers` package only ours runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
tokenizer="${TOKENIZER:-$cache/tokenizers/smollm2/tokenizer.json}"
rounds="${ROUNDS:-5}"
python="${PYTHON:-python3}"
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=(/usr/lib/python3.11)
if [ ! -f "$tokenizer" ]; then
    echo "bench-tokenize: $tokenizer not found (run scripts/fetch-assets.sh, or set TOKENIZER)" >&2
    exit 2
fi
bin="${SWIFTDRAFT_BIN:-}"
if [ -z "$bin" ]; then
    swift build -c release --product swiftdraft >&2
    bin=.build/release/swiftdraft
fi
have_hf=1
if ! "$python" -c 'import tokenizers' 2>/dev/null; then
    echo "bench-tokenize: Python package 'tokenizers' not installed: measuring swiftdraft alone" >&2
    have_hf=0
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

hf_round() {
    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$python" - "$tokenizer" "${inputs[@]}" <<'PY'
import os, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
docs, size = [], 0
def add(path):
    global size
    data = open(path, "rb").read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return                      # swiftdraft tokenize skips non-UTF-8 files too
    if "\0" in text:
        return
    size += len(data)
    if text:
        docs.append(text)
for arg in sys.argv[2:]:
    if os.path.isdir(arg):
        for root, dirs, files in os.walk(arg):
            for f in files:
                p = os.path.join(root, f)
                if os.path.isfile(p):       # follows file symlinks, as swiftdraft does
                    add(p)
    else:
        add(arg)
t0 = time.perf_counter()
enc = tok.encode_batch(docs, add_special_tokens=False)
dt = time.perf_counter() - t0
print(f"{size / 1e6 / dt:.3f} {sum(len(e.ids) for e in enc)} {size}")
PY
}

ours_round() {
    rm -rf "$out/shards"
    SWIFTDRAFT_THREADS=1 "$bin" tokenize --tokenizer "$tokenizer" --input "${inputs[@]}" --output "$out/shards" \
        | sed -n 's/.* (\([0-9.]*\) MB\/s.*/\1/p'
}

ratios=()
for round in $(seq 1 "$rounds"); do
    ours=$(ours_round)
    tokens=$("$python" -c "import json;m=json.load(open('$out/shards/manifest.json'));print(m['train']['tokens']-m['train']['documents'])" 2>/dev/null || echo "?")
    if [ "$have_hf" = 1 ]; then
        read -r hf hf_tokens hf_bytes < <(hf_round)
        ratio=$(awk -v a="$ours" -v b="$hf" 'BEGIN { printf "%.3f", a / b }')
        ratios+=("$ratio")
        echo "round $round: swiftdraft $ours MB/s ($tokens ids), tokenizers $hf MB/s ($hf_tokens ids, $hf_bytes bytes), ratio $ratio"
    else
        echo "round $round: swiftdraft $ours MB/s ($tokens ids)"
    fi
done
if [ ${#ratios[@]} -gt 0 ]; then
    median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    echo "median ratio swiftdraft/tokenizers (single-threaded): $median over $rounds rounds"
fi
