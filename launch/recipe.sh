#!/usr/bin/env bash
# FastDraft's recipe against a real target, end to end and resumable:
#
#   launch/recipe.sh [--fresh] RECIPE    e.g. launch/recipe.sh configs/recipes/smollm2-draft-11m.recipe
#
# Steps, in order (each one's output is written under $work and the step is skipped on a rerun once complete):
#   tokenize-text, tokenize-code    the text and code corpora as token shards (the target's tokenizer)
#   tokenize-docs                   the documentation text, a source of its own (only when the recipe sets docs_inputs)
#   eval-sets, kd-prompts           evaluation sets held out of all training (scripts/make_prompt_sets.py); KD
#                                   completion prompts from the training texts, none of them an evaluation prompt
#   distill-completions, distill-magpie
#                                   the target's responses at FastDraft's four temperatures (loss-masked KD shards)
#   eval-instructions               Magpie instructions the target writes with another seed, minus any KD one
#   train-pt, train-cp, train-align one training run (the recipe's config), stopped at each stage's last step
#                                   (`plan --json`), its stage-end checkpoint kept as drafts/<stage>.h5
#   speculate-pt, speculate-cp, speculate-align
#                                   acceptance, tau, MBSU and speedup per prompt set after each stage
#   export, speculate-q8_0          the aligned draft as Q8_0 GGUF (llama.cpp's -md) and HF; measured again as Q8_0
#   speculate-q8_0-subset           with subset_head_at_load=K: the aligned draft, Q8_0 at load, its head cut to the K
#                                   ids most frequent in the KD responses (FR-Spec; no retraining)
#   speculate-q8_0-gammaG           the Q8_0 draft again at each gamma G of best_gammas: the table's gamma 3 is
#                                   FastDraft's, but on this CPU a verification pass costs more per row it verifies
#   table                           results/table.md from results/*.json
#   plot                            results/figure.png (scripts/recipe_plot.py): loss per stage, acceptance per set
#                                   and stage
#
# A run stopped anywhere (SIGTERM, kill -9, the end of the day) continues with the same command: `train` resumes from
# its latest checkpoint, `distill` from its responses.jsonl, and a step with a partial output redoes that step only.
# --fresh deletes the recipe's work directory first. RECIPE is a bash file of settings (see configs/recipes/);
# SWIFTDRAFT_BIN overrides the binary.
#
# A variant (another draft shape, a head_vocab) sets data_from=<another recipe's work directory>: it trains and
# measures on that recipe's shards, KD data and evaluation sets instead of making its own, so drafts compare on the
# same data; the data steps must be complete there (run that recipe first).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "recipe: $*" >&2; exit 2; }
fresh=0
if [[ "${1:-}" == "--fresh" ]]; then fresh=1; shift; fi
[[ $# -eq 1 ]] || die "usage: launch/recipe.sh [--fresh] RECIPE (a settings file, e.g. configs/recipes/smollm2-draft-11m.recipe)"
recipe="$1"
[[ -f "$recipe" ]] || die "$recipe: no such recipe file"

# Settings and their defaults; the recipe file overrides them.
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
name="" config="" work=""
target="$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
tokenizer_dir="$cache/tokenizers/smollm2"
text_inputs=() code_inputs=() docs_inputs=()
text_val_fraction=0.05 code_val_fraction=0.02
kd_text_prompts=200 kd_code_prompts=200 kd_seed=1
magpie=200 eval_instructions=40
temperatures="0.6,0.8,1.0,0" kd_max_new_tokens=128 kd_batch=32 kd_top_k=0
eval_text_prompts=40 eval_code_prompts=164 eval_max_new_tokens=64
gamma=3 temperature=0.6 export_dtype=q8_0
best_gammas="1 2"              # the quantized draft measured again at these gammas (speculate-q8_0-gammaG)
measure_stages="pt cp align"   # which stage-end drafts `speculate` measures (align is always measured)
data_from=""                   # another recipe's work directory whose data steps this one reuses
config_sets=()                 # key=value overrides of the config for train and plan (a variant's shape or head)
subset_head_at_load=0          # >0: speculate-q8_0-subset measures the aligned draft quantized at load with a head over
                               # this many ids ranked on the KD responses (FR-Spec, no retraining)
quantized_draft=gguf           # speculate-q8_0 measures the Q8_0 GGUF export (gguf) or the checkpoint quantized at
                               # load (native: `speculate --draft-dtype`, which keeps a subset head the export widens)
# shellcheck source=/dev/null
source "$recipe"
[[ -n "$name" && -n "$config" && -n "$work" ]] || die "$recipe: must set name, config and work"
[[ -f "$config" ]] || die "$recipe: config $config does not exist"
[[ -f "$target" ]] || die "$recipe: target $target does not exist (scripts/fetch-assets.sh fetches SmolLM2)"
[[ ${#text_inputs[@]} -gt 0 && ${#code_inputs[@]} -gt 0 ]] || die "$recipe: text_inputs and code_inputs must name inputs"

if [[ $fresh -eq 1 && -d "$work" ]]; then
    echo "recipe[$name]: --fresh: removing $work" >&2
    rm -rf "$work"
fi
# Where the data steps' outputs live: this recipe's own work directory, or the one it borrows them from.
data="$work"
if [[ -n "$data_from" ]]; then
    [[ -d "$data_from/.done" ]] || die "$recipe: data_from $data_from is not a recipe work directory (run that recipe first)"
    data="$data_from"
fi
bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
[[ -x "$bin" ]] || die "$bin: not built (swift build -c release --product swiftdraft)"
python="${SWIFTDRAFT_PYTHON:-$(scripts/python-env.sh)}"
mkdir -p "$work/.done" "$work/results" "$work/drafts"
log="$work/recipe.log"

say() { echo "recipe[$name] $(date -u +%H:%M:%S) $*" | tee -a "$log" >&2; }
done_marker() { echo "$work/.done/$1"; }
# run_step NAME COMMAND...: skipped when NAME is marked done; the marker is written only after COMMAND succeeds.
run_step() {
    local step="$1"; shift
    if [[ -f "$(done_marker "$step")" ]]; then
        say "$step: complete, skipped"
        return 0
    fi
    say "$step: running"
    local started=$SECONDS
    "$@"
    date -u +%FT%TZ > "$(done_marker "$step")"
    say "$step: done in $((SECONDS - started)) s"
}
# data_step NAME COMMAND...: run_step for a step that makes data, which a recipe with data_from borrows instead.
data_step() {
    if [[ -z "$data_from" ]]; then run_step "$@"; return; fi
    [[ -f "$data/.done/$1" ]] || die "$1: not complete in $data_from (data_from); run that recipe first"
    say "$1: from $data_from"
}
# Writes stdout of a command to FILE atomically (a killed step leaves no half-written result).
to_file() {
    local file="$1"; shift
    "$@" > "$file.tmp"
    mv "$file.tmp" "$file"
}

tokenize() {
    local out="$1" fraction="$2"; shift 2
    rm -rf "$out"
    "$bin" tokenize --tokenizer "$tokenizer_dir/tokenizer.json" --input "$@" --output "$out" --val-fraction "$fraction"
}

make_eval_sets() {
    rm -rf "$data/eval.tmp"
    "$python" scripts/make_prompt_sets.py --cache "$cache" --output "$data/eval.tmp" \
        --text-prompts "$eval_text_prompts" --code-prompts "$eval_code_prompts"
    rm -rf "$data/eval"
    mv "$data/eval.tmp" "$data/eval"
}

# Instructions the target writes with a sampling seed of their own, minus any the KD run also wrote: the
# instruction set is kept apart from every KD prompt.
make_eval_instructions() {
    rm -rf "$data/eval-magpie"
    "$bin" distill --target "$target" --magpie "$eval_instructions" --temperatures 0 --max-new-tokens 48 \
        --seed 777 --batch "$kd_batch" --output "$data/eval-magpie"
    "$python" scripts/recipe_prompts.py instructions --distill "$data/eval-magpie" \
        --exclude "$data/distill/magpie" --output "$data/eval/instructions.jsonl"
}

make_kd_prompts() {
    to_file "$data/kd-prompts.jsonl" "$python" scripts/recipe_prompts.py completions --text "${text_inputs[@]}" \
        --code "${code_inputs[@]}" --text-prompts "$kd_text_prompts" --code-prompts "$kd_code_prompts" \
        --seed "$kd_seed" --exclude "$data/eval"
}

distill() {
    local out="$1"; shift
    local extra=()
    [[ "$kd_top_k" -gt 0 ]] && extra+=(--top-k-logits "$kd_top_k")
    "$bin" distill --target "$target" "$@" --output "$out" --temperatures "$temperatures" \
        --max-new-tokens "$kd_max_new_tokens" --batch "$kd_batch" --seed "$kd_seed" "${extra[@]}"
}

data_paths=(--set "tokenizer=$tokenizer_dir/tokenizer.json" --set "data.sources.text.path=$data/data/text"
            --set "data.sources.code.path=$data/data/code"
            --set "data.sources.kd_completions.path=$data/distill/completions"
            --set "data.sources.kd_instructions.path=$data/distill/magpie")
[[ ${#docs_inputs[@]} -gt 0 ]] && data_paths+=(--set "data.sources.docs.path=$data/data/docs")
for setting in "${config_sets[@]}"; do data_paths+=(--set "$setting"); done

stage_last_step() {
    "$bin" plan --config "$config" "${data_paths[@]}" --json \
        | "$python" -c "import json,sys; print(json.load(sys.stdin)['stages'][$1]['last_step'])"
}

# Trains to the end of stage INDEX and keeps that stage's checkpoint as drafts/LABEL.h5.
train_stage() {
    local index="$1" label="$2" last
    last="$(stage_last_step "$index")"
    "$bin" train --config "$config" "${data_paths[@]}" --run-dir "$work/run" --resume auto --max-steps "$last"
    local checkpoint
    checkpoint="$(printf '%s/run/checkpoints/step-%08d.h5' "$work" "$last")"
    [[ -f "$checkpoint" ]] || die "train-$label: $checkpoint was not written"
    cp "$checkpoint" "$work/drafts/$label.h5.tmp"
    mv "$work/drafts/$label.h5.tmp" "$work/drafts/$label.h5"
}

speculate() {
    local label="$1" draft="$2" sets=()
    shift 2
    for set in text code instructions; do sets+=("$data/eval/$set.jsonl"); done
    cat "${sets[@]}" > "$work/results/prompts.jsonl.tmp"
    mv "$work/results/prompts.jsonl.tmp" "$work/results/prompts.jsonl"
    to_file "$work/results/$label.json" "$bin" speculate --target "$target" --draft "$draft" \
        --prompts "$work/results/prompts.jsonl" --gamma "${speculate_gamma:-$gamma}" --temperature "$temperature" \
        --max-new-tokens "$eval_max_new_tokens" --seed 1 --json "$@"
}

export_draft() {
    "$bin" export --checkpoint "$work/drafts/align.h5" --format gguf --dtype "$export_dtype" --target "$target" \
        --output "$work/export/gguf" --overwrite
    "$bin" export --checkpoint "$work/drafts/align.h5" --format hf --output "$work/export/hf" --overwrite
}

say "recipe $recipe: work directory $work"
data_step tokenize-text tokenize "$data/data/text" "$text_val_fraction" "${text_inputs[@]}"
data_step tokenize-code tokenize "$data/data/code" "$code_val_fraction" "${code_inputs[@]}"
if [[ ${#docs_inputs[@]} -gt 0 ]]; then
    data_step tokenize-docs tokenize "$data/data/docs" "$text_val_fraction" "${docs_inputs[@]}"
fi
data_step eval-sets make_eval_sets
data_step kd-prompts make_kd_prompts
data_step distill-completions distill "$data/distill/completions" --prompts "$data/kd-prompts.jsonl"
data_step distill-magpie distill "$data/distill/magpie" --magpie "$magpie"
data_step eval-instructions make_eval_instructions
run_step train-pt train_stage 0 pt
measured() { [[ " $measure_stages " == *" $1 "* ]]; }
if measured pt; then run_step speculate-pt speculate pt "$work/drafts/pt.h5"; fi
run_step train-cp train_stage 1 cp
if measured cp; then run_step speculate-cp speculate cp "$work/drafts/cp.h5"; fi
run_step train-align train_stage 2 align
run_step speculate-align speculate align "$work/drafts/align.h5"
run_step export export_draft
if [[ "$quantized_draft" == native ]]; then
    quantized=("$work/drafts/align.h5" --draft-dtype "$export_dtype")
else
    quantized=("$(ls "$work"/export/gguf/*.gguf | head -1)")
fi
run_step speculate-q8_0 speculate align-q8_0 "${quantized[@]}"
# speculate_at GAMMA LABEL DRAFT [ARGS...]: `speculate` at another gamma than the recipe's.
speculate_at() {
    local speculate_gamma="$1"; shift
    speculate "$@"
}
for g in $best_gammas; do
    run_step "speculate-q8_0-gamma$g" speculate_at "$g" "align-q8_0-gamma$g" "${quantized[@]}"
done
if [[ "$subset_head_at_load" -gt 0 ]]; then
    run_step speculate-q8_0-subset speculate align-q8_0-subset "$work/drafts/align.h5" --draft-dtype "$export_dtype" \
        --draft-head-vocab "$subset_head_at_load" --draft-head-vocab-source "$data/distill/completions"
fi
run_step table to_file "$work/results/table.md" "$python" scripts/recipe_table.py "$work/results"
# The figure goes to a temporary name first, so a killed step leaves no half-written PNG; the name keeps its .png
# because matplotlib picks the format from it.
plot_figure() {
    "$python" scripts/recipe_plot.py --output "$work/results/figure.tmp.png" "$work"
    mv "$work/results/figure.tmp.png" "$work/results/figure.png"
}
run_step plot plot_figure
say "complete: $work/results/table.md, $work/results/figure.png"
cat "$work/results/table.md"
