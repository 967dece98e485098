#!/usr/bin/env bash
# Single-stream generation of SmolLM2 Q4_1 on THREADS threads: SwiftDraft's engine (`swiftdraft bench-generate`, the
# real decode loop: products, attention over the cache, norms, sampling) under each quantized-activation mode in
# MODES, against llama.cpp's llama-bench (built by scripts/build-llama-cpp.sh from the same source archive), side by
# side in ROUNDS alternated rounds (llama-bench first on odd rounds, ours first on even ones). Decode is measured at
# the same cache depths on both sides: from an empty cache (llama-bench tg128) and after a 512-token prompt (tg128 at
# -d 512); prompt processing is pp512. Prints each round, then medians and ratios.
#   ROUNDS=3 THREADS=2 MODES="exact int16 int8" scripts/bench-decode.sh
set -euo pipefail
bench_name=bench-decode
# shellcheck source=scripts/smollm2-bench-setup.sh
source "$(dirname "$0")/smollm2-bench-setup.sh"
modes="${MODES:-exact int16 int8}"
(cd "$root" && swift build -c release --product swiftdraft >&2)
ours="${SWIFTDRAFT_BIN:-$root/.build/release/swiftdraft}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "bench-decode: $model, $threads threads, modes: $modes, $rounds rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
run_llama() {
    "$bin/llama-bench" -m "$model" -p 512 -n 128 -d 0,512 -t "$threads" -r 2 -o csv 2>/dev/null > "$out/llama-$1.csv"
}
run_ours() {
    for mode in $modes; do
        for depth in 1 512; do
            SWIFTDRAFT_THREADS="$threads" SWIFTDRAFT_QUANT_ACTIVATIONS="$mode" "$ours" bench-generate --model "$model" \
                --batches 1 --prompt-tokens "$depth" --new-tokens 128 --temperature 0 --json 2>/dev/null \
                | tail -1 > "$out/ours-$1-$mode-$depth.json"
        done
    done
}
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then run_llama "$r"; run_ours "$r"; else run_ours "$r"; run_llama "$r"; fi
    echo "bench-decode: round $r done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

python3 - "$out" "$rounds" "$modes" <<'PY'
import csv, json, statistics, sys
out, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
med = statistics.median
llama = {"tg0": [], "tg512": [], "pp512": []}
ours = {(m, d): [] for m in modes for d in ("tg0", "tg512", "pp512")}
for r in range(1, rounds + 1):
    for rec in csv.DictReader(open(f"{out}/llama-{r}.csv")):
        tps, depth = float(rec["avg_ts"]), int(rec["n_depth"])
        if int(rec["n_gen"]) > 0:
            llama[f"tg{depth}"].append(tps)
        elif depth == 0:
            llama["pp512"].append(tps)
    line = [f"round {r}: llama.cpp tg128 {llama['tg0'][-1]:.1f}, tg128@512 {llama['tg512'][-1]:.1f}, pp512 {llama['pp512'][-1]:.1f}"]
    for m in modes:
        empty = json.load(open(f"{out}/ours-{r}-{m}-1.json"))
        deep = json.load(open(f"{out}/ours-{r}-{m}-512.json"))
        ours[(m, "tg0")].append(1 / empty["decode_step_s"])
        ours[(m, "tg512")].append(1 / deep["decode_step_s"])
        ours[(m, "pp512")].append(512 / deep["prefill_s"])
        line.append(f"{m} {ours[(m, 'tg0')][-1]:.1f} / {ours[(m, 'tg512')][-1]:.1f} / {ours[(m, 'pp512')][-1]:.1f}")
    print(" | ".join(line) + " tok/s")
print(f"medians over {rounds} rounds (tokens/s; ratio to llama.cpp):")
names = {"tg0": "decode, empty cache", "tg512": "decode after 512 tokens", "pp512": "prompt processing (512)"}
for key, name in names.items():
    cells = [f"llama.cpp {med(llama[key]):.1f}"]
    for m in modes:
        cells.append(f"{m} {med(ours[(m, key)]):.1f} ({med(ours[(m, key)]) / med(llama[key]):.2f}x)")
    print(f"  {name}: " + ", ".join(cells))
PY
echo "bench-decode: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
