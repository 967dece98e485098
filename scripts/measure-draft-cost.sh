#!/usr/bin/env bash
# The draft/target cost ratio c of each recipe draft shape against SmolLM2, as `speculate` measures it (draft step
# time over target step time, in the same run). c depends on the shape and the weights' type, not on what the draft
# learned, so each shape is trained for 2 steps only, on the quickstart's data (run launch/quickstart.sh first), and
# measured as an fp32 checkpoint, quantized to Q8_0 at load (`--draft-dtype q8_0`) and as its Q8_0 GGUF export, on 6
# prompts of the quickstart's evaluation sets (2 per set, 32 new tokens, gamma 3, T 0.6).
#
#   scripts/measure-draft-cost.sh [OUT_DIR]     (default /tmp/swiftdraft-draft-cost; prints one line per draft)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/swiftdraft-draft-cost}"
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
python="${SWIFTDRAFT_PYTHON:-$(scripts/python-env.sh)}"
target="$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
q=runs/quickstart
for f in "$q/eval/text.jsonl" "$q/distill/completions/manifest.json"; do
    [[ -f "$f" ]] || { echo "measure-draft-cost: $f missing: run launch/quickstart.sh first" >&2; exit 2; }
done
mkdir -p "$out"
for set in text code instructions; do head -2 "$q/eval/$set.jsonl"; done > "$out/prompts.jsonl"
data=(--set "tokenizer=$cache/tokenizers/smollm2/tokenizer.json" --set "data.sources.text.path=$q/data/text"
      --set "data.sources.code.path=$q/data/code" --set "data.sources.docs.path=$q/data/text"
      --set "data.sources.kd_completions.path=$q/distill/completions"
      --set "data.sources.kd_instructions.path=$q/distill/magpie"
      --set schedule.global_batch_tokens=4096 --set schedule.micro_batch=16)
# The shapes of configs/recipes/smollm2-draft-{11m,11m-hv8k,10m-deep}.recipe.
names=(11m 11m-hv8k 10m-deep)
shapes=("" "model.head_vocab=8192 model.head_vocab_source=kd_completions"
        "model.dim=160 model.layers=8 model.heads=5 model.kv_heads=1 model.ffn_dim=448")
measure() {  # LABEL DRAFT [ARGS...]
    local label="$1" draft="$2"; shift 2
    "$bin" speculate --target "$target" --draft "$draft" --prompts "$out/prompts.jsonl" --max-new-tokens 32 \
        --seed 1 --json "$@" > "$out/${label// /-}.json"
    "$python" -c 'import json, sys
o = json.load(open(sys.argv[1]))["overall"]
print("%-22s c measured %.4f  c by parameters %.4f  break-even acceptance %.3f" % (
    sys.argv[2], o["cost_ratio_measured"], o["c"], o["break_even_acceptance"]))' "$out/${label// /-}.json" "$label"
}
for i in "${!names[@]}"; do
    n="${names[$i]}" sets=()
    for s in ${shapes[$i]}; do sets+=(--set "$s"); done
    rm -rf "$out/$n"
    "$bin" train --config configs/recipe-smollm2-11m.yaml "${data[@]}" "${sets[@]}" --run-dir "$out/$n" \
        --max-steps 2 --quiet > "$out/$n.train.log" 2>&1 || { cat "$out/$n.train.log" >&2; exit 1; }
    "$bin" export --checkpoint "$out/$n" --format gguf --dtype q8_0 --target "$target" --output "$out/$n-gguf" \
        --overwrite > /dev/null
    measure "$n fp32" "$out/$n"
    measure "$n q8_0-at-load" "$out/$n" --draft-dtype q8_0
    measure "$n q8_0-gguf" "$out/$n-gguf/draft-q8_0.gguf"
done
