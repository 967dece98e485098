#!/usr/bin/env bash
# Side-by-side training throughput: `swiftdraft bench` against PyTorch on the same config, alternated in one run so
# both see the same machine; prints each pair and the median ratio. PyTorch is optional: without it, this says so.
# Usage: scripts/bench-vs-pytorch.sh [config=configs/bench.yaml] [rounds=3] [steps=5]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/bench.yaml}
rounds=${2:-3}
steps=${3:-5}
threads=${SWIFTDRAFT_THREADS:-$(nproc)}
bin=${SWIFTDRAFT_BIN:-.build/release/swiftdraft}
[ -x "$bin" ] || swift build -c release --product swiftdraft
# The reference's Python: $SWIFTDRAFT_REF_PYTHON, else the reference venv (with PyTorch) under the asset cache, else python3.
python=${SWIFTDRAFT_REF_PYTHON:-${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}/ref-venv/bin/python}
[ -x "$python" ] || python=python3
if ! "$python" -c 'import torch, transformers, yaml' 2>/dev/null; then
    echo "PyTorch/transformers not installed: skipping the comparison (pip install torch transformers pyyaml)."
    "$bin" bench --config "$config" --steps "$steps"
    exit 0
fi
ratios=()
for round in $(seq "$rounds"); do
    ours=$(SWIFTDRAFT_THREADS=$threads "$bin" bench --config "$config" --steps "$steps" --json)
    theirs=$("$python" scripts/reference/bench_pytorch.py "$config" "$steps" "$threads")
    ratio=$(python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(round(a['tokens_per_s']/b['tokens_per_s'],3))" "$ours" "$theirs")
    echo "round $round: swiftdraft $ours"
    echo "round $round: pytorch    $theirs"
    echo "round $round: throughput ratio swiftdraft/pytorch = $ratio"
    ratios+=("$ratio")
done
python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'median ratio over {len(r)} rounds: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "${ratios[@]}"
