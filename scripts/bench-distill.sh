#!/usr/bin/env bash
# distill's throughput against transformers' generate on the same prompts, side by side in ROUNDS alternated rounds.
#
#   ROUNDS=2 scripts/bench-distill.sh PROMPTS.jsonl [BATCH] [MAX_NEW_TOKENS]
#
# Ours: `swiftdraft distill --target <SmolLM2 Q4_1 GGUF> --prompts PROMPTS --batch BATCH --max-new-tokens N` at its
# four default temperatures (every prompt answered four times, continuous batching), target tokens/s as distill
# reports them. transformers: the same (prompt, temperature) jobs, each prompt's token ids taken from our
# responses.jsonl so both sides see the same tokens, in batches of BATCH (left-padded, so a batch waits for its
# longest prompt), fp32 from the same GGUF on 2 threads, sampling at temperature 0.8 (for every job: the cost is
# the same at any temperature), and exactly N new tokens each (our responses mostly run to N: the script prints
# how many of ours stopped at EOS). Needs torch, transformers, gguf and accelerate in $SWIFTDRAFT_CACHE/ref-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
prompts="${1:?usage: $0 PROMPTS.jsonl [BATCH] [MAX_NEW_TOKENS]}"
batch="${2:-64}"
new="${3:-128}"
rounds="${ROUNDS:-2}"
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
gguf="$(find "$cache/smollm2" -name 'SmolLM2-135M-Instruct*.gguf' | head -1)"
python="$cache/ref-venv/bin/python"
export PATH=/opt/swift/usr/bin:$PATH SWIFTDRAFT_THREADS=2 OPENBLAS_NUM_THREADS=2
swift build -c release --product swiftdraft >&2
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
# A copy, so that a rebuild during the run cannot change what is measured.
cp .build/release/swiftdraft "$bin/swiftdraft"

run_ours() {
    rm -rf "$bin/out"
    "$bin/swiftdraft" distill --target "$gguf" --prompts "$prompts" --output "$bin/out" --batch "$batch" \
        --max-new-tokens "$new" 2> "$bin/ours.log" > /dev/null
    grep -o 'in this run, [0-9]* target tokens in [0-9.]*s: [0-9.]* tokens/s' "$bin/ours.log" | sed 's/^/ours: /'
}
run_transformers() {
    "$python" - "$gguf" "$bin/out/responses.jsonl" "$batch" "$new" 2> "$bin/transformers.log" <<'PY' || { tail -5 "$bin/transformers.log" >&2; exit 1; }
import json, os, sys, time, torch
from transformers import AutoModelForCausalLM
path, responses, batch, new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(2)
records = [json.loads(line) for line in open(responses)]
eos = sum(r["finish_reason"] == "eos" for r in records)
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                             torch_dtype=torch.float32).eval()
torch.manual_seed(1)
made, start = 0, time.perf_counter()
for b in range(0, len(records), batch):
    group = records[b:b + batch]
    width = max(len(r["prompt_ids"]) for r in group)
    ids = torch.zeros((len(group), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(group):
        n = len(r["prompt_ids"])
        ids[i, width - n:] = torch.tensor(r["prompt_ids"])
        mask[i, width - n:] = 1
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=0.8, top_k=0,
                             max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    made += (out.shape[1] - width) * len(group)
seconds = time.perf_counter() - start
print(f"transformers: {made} target tokens in {seconds:.2f}s: {made / seconds:.1f} tokens/s "
      f"({len(records)} jobs; ours stopped {eos} of them at EOS)")
PY
}
echo "bench-distill: $prompts, batch $batch, $new new tokens, $rounds rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
run_ours  # transformers reads the prompt ids from our output: the first round starts with ours either way
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then run_transformers; run_ours; else run_ours; run_transformers; fi
done
echo "bench-distill: load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
