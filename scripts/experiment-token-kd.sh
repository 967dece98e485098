#!/usr/bin/env bash
# Token-level against sequence-level distillation in the alignment stage, on the session recipe's 11M draft:
# its PT->CP checkpoint is aligned again (2M tokens, the recipe's mixture) on KD completions that carry the target's
# top-32 log-probabilities, once per loss (ce: FastDraft's sequence-level KD; ce_kl, kl, tvd: token-level, see the
# README's "Token-level distillation"), with the same data, schedule and seed, and each result is measured Q8_0 at
# load on the session's 78 held-out prompts (gamma 3, T 0.6; ce and ce_kl also at gamma 1).
#
#   scripts/experiment-token-kd.sh [WORK]     (default runs/exp-tokenkd; needs the session recipe's work directory,
#                                              launch/recipe.sh configs/recipes/smollm2-draft-11m-session.recipe)
#
# Resumable as the recipe is: distill continues from its responses.jsonl, a finished training or report is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
# The session recipe's settings (its work directory, config, KD temperatures and lengths, gamma, temperature) are the
# experiment's, read from the recipe itself rather than repeated here.
source configs/recipes/smollm2-draft-11m-session.recipe
session="$work"
work="${1:-runs/exp-tokenkd}"
bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
python="$(scripts/python-env.sh)"
target="$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ -f "$session/drafts/cp.h5" && -f "$session/results/prompts.jsonl" ]] \
    || { echo "experiment-token-kd: $session is incomplete: run the session recipe first" >&2; exit 2; }
mkdir -p "$work"

# The session's KD completion prompts again, at FastDraft's four temperatures, with the target's top-32 log-probs.
if ! grep -q '"complete" : true' "$work/distill/completions/manifest.json" 2>/dev/null; then
    "$bin" distill --target "$target" --prompts "$session/kd-prompts.jsonl" --output "$work/distill/completions" \
        --temperatures "$temperatures" --max-new-tokens "$kd_max_new_tokens" --batch "$kd_batch" --seed 1 \
        --top-k-logits 32
fi

config() {  # LOSS: the session config's align stage alone, from the PT->CP checkpoint, on one linear schedule
    "$python" - "$config" "$1" "$work" "$cache" <<'EOF'
import sys, yaml
source, loss, work, cache = sys.argv[1:]
c = yaml.safe_load(open(source))
align = next(stage for stage in c["schedule"]["stages"] if stage["name"] == "align")
align["loss"] = {"kind": loss}
c["schedule"]["stages"] = [align]
c["run"] = {"name": "exp-tokenkd-" + loss, "dir": "%s/run-%s" % (work, loss), "seed": c["run"]["seed"],
            "time_budget_hours": 1}
c["tokenizer"] = cache + "/tokenizers/smollm2/tokenizer.json"
c["data"]["sources"] = {name: src for name, src in c["data"]["sources"].items() if name in align["mixture"]}
c["data"]["sources"]["kd_completions"]["path"] = work + "/distill/completions"
c["lr_schedule"] = {"kind": "linear", "warmup_tokens": 1.6e5, "decay_fraction": 1.0}
c["log"]["eval_every_steps"] = 0
yaml.safe_dump(c, sys.stdout, sort_keys=False)
EOF
}

for loss in ce ce_kl tvd kl; do
    config "$loss" > "$work/align-$loss.yaml"
    "$bin" train --config "$work/align-$loss.yaml" --init-from "$session/drafts/cp.h5" --quiet
    draft="$work/run-$loss/checkpoints/$(cat "$work/run-$loss/checkpoints/latest")"
    gammas=("$gamma")
    [[ $loss == ce || $loss == ce_kl ]] && gammas=("$gamma" 1)
    for g in "${gammas[@]}"; do
        report="$work/$loss-gamma$g.json"
        [[ -f "$report" ]] && continue
        "$bin" speculate --target "$target" --draft "$draft" --draft-dtype q8_0 --prompts "$session/results/prompts.jsonl" \
            --gamma "$g" --temperature "$temperature" --max-new-tokens "$eval_max_new_tokens" --seed 1 --json > "$report.tmp"
        mv "$report.tmp" "$report"
    done
done
python3 - "$work" <<'EOF'
import json, os, sys
work = sys.argv[1]
print("| align loss | gamma | text | code | instructions | overall | tau | decode speedup | pass (steps) |")
print("|---|---|---|---|---|---|---|---|---|")
for loss in ["ce", "ce_kl", "tvd", "kl"]:
    for g in [3, 1]:
        path = os.path.join(work, "%s-gamma%d.json" % (loss, g))
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        s, o = r["sets"], r["overall"]
        print("| %s | %d | %.3f | %.3f | %.3f | **%.3f** | %.2f | %.2fx | %.2f |" % (
            loss, g, s["text"]["acceptance_rate"], s["code"]["acceptance_rate"], s["instructions"]["acceptance_rate"],
            o["acceptance_rate"], o["tau"], o["decode_speedup"], o["pass_cost_steps"]))
EOF
