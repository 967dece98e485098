#!/usr/bin/env bash
# Batched generation throughput (new tokens/s at batch 1, 16, 64: what `distill` runs) and draft decode speed, in a
# release build; then, when the reference venv has transformers and torch, transformers' generate on the same model
# shape in fp32 with 2 threads and sampling, for the comparison.
#
#   scripts/bench-generate.sh [--model M.gguf] [--new-tokens N]
#
# Without --model (or until the GGUF loader is in the build) SwiftDraft runs a random-weight fp32 model of
# SmolLM2-135M's exact shape, which is the arithmetic transformers does on the GGUF (it dequantizes to fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
MODEL=""
NEW=32
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --new-tokens) NEW="$2"; shift 2 ;;
    *) echo "usage: $0 [--model M] [--new-tokens N]" >&2; exit 2 ;;
  esac
done
CACHE="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
GGUF="$(find "$CACHE/smollm2" -name 'SmolLM2-135M-Instruct*.gguf' 2>/dev/null | head -1 || true)"
export SWIFTDRAFT_THREADS=2 OPENBLAS_NUM_THREADS=2

swift build -c release --product swiftdraft >/dev/null
BIN=.build/release/swiftdraft
echo "== SwiftDraft ($(uptime | sed 's/.*load average/load average/'))"
if [[ -n "$MODEL" ]]; then
  "$BIN" bench-generate --model "$MODEL" --batches 1,16,64 --new-tokens "$NEW"
else
  "$BIN" bench-generate --shape smollm2 --batches 1,16,64 --new-tokens "$NEW"
fi
echo "== draft decode, batch 1 (the ratio to the target's batch-1 step is the speculative cost c)"
"$BIN" bench-generate --shape draft10m --batches 1 --new-tokens 64

PY="$CACHE/ref-venv/bin/python"
if [[ -x "$PY" ]] && "$PY" -c 'import torch, transformers, gguf, accelerate' 2>/dev/null && [[ -n "$GGUF" ]]; then
  echo "== transformers generate on $(basename "$GGUF") (fp32, 2 threads, sampling)"
  "$PY" - "$GGUF" "$NEW" <<'PYEOF'
import sys, time, os, torch
from transformers import AutoModelForCausalLM
path, new = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32)
model.eval()
g = torch.Generator().manual_seed(1)
for batch in (1, 16, 64):
    ids = torch.randint(0, model.config.vocab_size, (batch, 16), generator=g)
    with torch.no_grad():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                             max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
        seconds = time.perf_counter() - start
    made = (out.shape[1] - 16) * batch
    print(f"transformers batch {batch}: {made} new tokens in {seconds:.2f} s: {made / seconds:.1f} tokens/s")
PYEOF
else
  echo "== transformers: skipped (needs torch, transformers, gguf and accelerate in $CACHE/ref-venv and the SmolLM2 GGUF)"
fi
