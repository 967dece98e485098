#!/usr/bin/env bash
# Decode and prompt-processing throughput of SmolLM2 Q4_1 on 2 threads, SwiftDraft's quantized CPU products against
# llama.cpp's llama-bench (built by scripts/build-llama-cpp.sh from the same source archive), side by side in one run:
# ROUNDS alternated rounds (llama-bench first on odd rounds, ours first on even ones), medians of each.
# "Ours" is quant-bench: every weight product of a decode step (30 layers x q/k/v/o/gate/up/down + the LM head) over
# the real memory-mapped GGUF, which is most of a step's cost; attention, norms and rotary are not in it (the whole
# engine against llama-bench: scripts/bench-decode.sh). Prints each round and a summary with both ratios and the
# bandwidth fraction.
#   ROUNDS=5 THREADS=2 scripts/bench-inference.sh
set -euo pipefail
bench_name=bench-inference
# shellcheck source=scripts/smollm2-bench-setup.sh
source "$(dirname "$0")/smollm2-bench-setup.sh"
(cd "$root" && swift build -c release --product quant-bench >&2)
ours="$root/.build/release/quant-bench"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "bench-inference: $model, $threads threads, $rounds rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
run_llama() {
    "$bin/llama-bench" -m "$model" -p 512 -n 128 -t "$threads" -r 1 -o csv 2>/dev/null > "$out/llama-$1.csv"
}
run_ours() {
    "$ours" "$model" --threads "$threads" --decode-steps 128 --prompt 512 --batch 64 --reps 1 > "$out/ours-$1.json"
}
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then run_llama "$r"; run_ours "$r"; else run_ours "$r"; run_llama "$r"; fi
    echo "bench-inference: round $r done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

python3 - "$out" "$rounds" <<'PY'
import csv, json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, rounds + 1):
    pp = tg = None
    for rec in csv.DictReader(open(f"{out}/llama-{r}.csv")):
        seconds = float(rec["avg_ns"]) / 1e9
        if int(rec["n_prompt"]) > 0: pp = int(rec["n_prompt"]) / seconds
        if int(rec["n_gen"]) > 0: tg = int(rec["n_gen"]) / seconds
    ours = json.load(open(f"{out}/ours-{r}.json"))
    rows.append((tg, pp, ours))
    print(f"round {r}: llama.cpp tg128 {tg:.1f} tok/s, pp512 {pp:.1f} tok/s | ours decode {ours['decode_tps']:.1f} tok/s, "
          f"prompt {ours['prompt_tps']:.1f} tok/s, batch-{ours['batch']} {ours['batch_tps']:.1f} tok/s, "
          f"read {ours['read_gbps']:.1f} GB/s")
med = lambda xs: statistics.median(xs)
tg, pp = med([r[0] for r in rows]), med([r[1] for r in rows])
dec, pro = med([r[2]["decode_tps"] for r in rows]), med([r[2]["prompt_tps"] for r in rows])
bat, batg = med([r[2]["batch_tps"] for r in rows]), med([r[2]["batch_gflops"] for r in rows])
limit = med([r[2]["decode_bandwidth_limit_tps"] for r in rows])
o = rows[0][2]
print(f"medians over {rounds} rounds ({o['threads']} threads, {o['weight_mib']:.1f} MiB of weights per token):")
print(f"  decode:  ours {dec:.1f} tok/s ({med([r[2]['decode_gbps'] for r in rows]):.1f} GB/s), llama.cpp {tg:.1f} tok/s, "
      f"ratio {dec / tg:.2f}x; bandwidth limit {limit:.0f} tok/s, ours at {dec / limit:.0%}, llama.cpp at {tg / limit:.0%}")
print(f"  prompt:  ours {pro:.1f} tok/s ({med([r[2]['prompt_gflops'] for r in rows]):.1f} GFLOP/s), "
      f"llama.cpp {pp:.1f} tok/s, ratio {pro / pp:.2f}x")
print(f"  batch {o['batch']}: ours {bat:.1f} tok/s ({batg:.1f} GFLOP/s)")
PY
echo "bench-inference: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
