#!/usr/bin/env bash
# Data-parallel scaling on one machine: `swiftdraft bench` as 1 rank x 1 thread, then 2 ranks x 1 thread under mpirun
# (gradients all-reduced every step, overlapped with backward), alternated for `rounds` rounds. Prints tokens/s per
# rank, all-reduce time per step, time hidden by overlap, and the efficiency (2-rank per-rank tokens/s over 1-rank).
# Usage: scripts/bench-scaling.sh [config=configs/bench.yaml] [rounds=3] [steps=5]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/bench.yaml}
rounds=${2:-3}
steps=${3:-5}
bin=${SWIFTDRAFT_BIN:-.build/release/swiftdraft}
[ -x "$bin" ] || swift build -c release --product swiftdraft
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
effs=()
for round in $(seq "$rounds"); do
    one=$(OPENBLAS_NUM_THREADS=1 SWIFTDRAFT_THREADS=1 "$bin" bench --config "$config" --steps "$steps" --json)
    two=$(mpirun "${root[@]}" -np 2 --bind-to core -x OPENBLAS_NUM_THREADS=1 -x SWIFTDRAFT_THREADS=1 \
          "$bin" bench --config "$config" --steps "$steps" --json)
    eff=$(python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(round(b['tokens_per_s']/a['tokens_per_s'],3))" "$one" "$two")
    echo "round $round: 1 rank  $one"
    echo "round $round: 2 ranks $two"
    echo "round $round: scaling efficiency (per-rank tokens/s, 2 ranks / 1 rank) = $eff"
    effs+=("$eff")
done
python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'median efficiency over {len(r)} rounds: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "${effs[@]}"
