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
work="${1:-runs/exp-tokenkd}"
session=runs/recipe-smollm2-11m-session
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
target="$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ -f "$session/drafts/cp.h5" && -f "$session/results/prompts.jsonl" ]] \
    || { echo "experiment-token-kd: $session is incomplete: run the session recipe first" >&2; exit 2; }
mkdir -p "$work"

# The session's KD completion prompts again, at FastDraft's four temperatures, with the target's top-32 log-probs.
if ! grep -q '"complete" : true' "$work/distill/completions/manifest.json" 2>/dev/null; then
    "$bin" distill --target "$target" --prompts "$session/kd-prompts.jsonl" --output "$work/distill/completions" \
        --temperatures 0.6,0.8,1.0,0 --max-new-tokens 128 --batch 64 --seed 1 --top-k-logits 32
fi

config() {  # LOSS: the session config's align stage alone, from the PT->CP checkpoint
    cat <<EOF
run: {name: exp-tokenkd-$1, dir: $work/run-$1, seed: 1234, time_budget_hours: 1}
model: {arch: llama, vocab_size: 49152, dim: 192, layers: 4, heads: 6, kv_heads: 2, ffn_dim: 512,
        max_seq_len: 512, rope_theta: 10000.0, norm_eps: 1.0e-5, tie_embeddings: true,
        head_vocab: 8192, head_vocab_source: kd_completions}
tokenizer: $cache/tokenizers/smollm2/tokenizer.json
data:
  seq_len: 256
  sources:
    text:            {path: $session/data/text}
    code:            {path: $session/data/code}
    kd_completions:  {path: $work/distill/completions}
    kd_instructions: {path: $session/distill/magpie}
schedule:
  global_batch_tokens: 16384
  micro_batch: 16
  stages:
    - {name: align, tokens: 2.0e6, mixture: {kd_completions: 0.5, kd_instructions: 0.3, text: 0.1, code: 0.1}, lr_scale: 0.5, loss: {kind: $1}}
optimizer: {name: adamw, lr: 2.0e-3, min_lr: 2.0e-4, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, grad_clip: 1.0}
lr_schedule: {kind: linear, warmup_tokens: 1.6e5, decay_fraction: 1.0}
distributed: {world_size: 1, bucket_mb: 25, overlap: true, zero_stage: 0}
device: {kind: cpu}
checkpoint: {every_steps: 50, keep_last: 2}
log: {every_steps: 10, eval_every_steps: 0, eval_sequences: 32}
EOF
}

for loss in ce ce_kl tvd kl; do
    config "$loss" > "$work/align-$loss.yaml"
    "$bin" train --config "$work/align-$loss.yaml" --init-from "$session/drafts/cp.h5" --quiet
    draft="$work/run-$loss/checkpoints/$(cat "$work/run-$loss/checkpoints/latest")"
    gammas=(3)
    [[ $loss == ce || $loss == ce_kl ]] && gammas=(3 1)
    for g in "${gammas[@]}"; do
        report="$work/$loss-gamma$g.json"
        [[ -f "$report" ]] && continue
        "$bin" speculate --target "$target" --draft "$draft" --draft-dtype q8_0 --prompts "$session/results/prompts.jsonl" \
            --gamma "$g" --temperature 0.6 --max-new-tokens 64 --seed 1 --json > "$report.tmp"
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
