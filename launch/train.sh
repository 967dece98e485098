#!/usr/bin/env bash
# Data-parallel training under mpirun: one rank per accelerator (or per core, on a CPU box).
#
#   launch/train.sh [-n N | --ranks N] --config F [any other `swiftdraft train` option]...
#
# Ranks: -n/--ranks, else `--set distributed.world_size=N`, else the config's distributed.world_size.
# More ranks than cores (nproc) is allowed for testing: the job is oversubscribed, unbound, MPI yields the CPU when
# idle and every rank gets one compute thread, so the ranks share the cores instead of fighting over them.
# Environment: SWIFTDRAFT_BIN (default .build/release/swiftdraft), MPIRUN (default mpirun),
# MPIRUN_ARGS (extra mpirun options, word-split), SWIFTDRAFT_LAUNCH_DRY_RUN=1 (print the command, run nothing).
set -euo pipefail

die() { echo "train.sh: $*" >&2; exit 2; }

bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
mpirun_cmd="${MPIRUN:-mpirun}"
ranks=""
config=""
world_override=""
pass=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        -n|--ranks|-np)
            [[ $# -ge 2 ]] || die "$1 needs a rank count"
            ranks="$2"; shift 2 ;;
        --ranks=*) ranks="${1#--ranks=}"; shift ;;
        --config)
            [[ $# -ge 2 ]] || die "--config needs a file"
            config="$2"; pass+=("$1" "$2"); shift 2 ;;
        --config=*) config="${1#--config=}"; pass+=("$1"); shift ;;
        --set)
            [[ $# -ge 2 ]] || die "--set needs key=value"
            if [[ "$2" == distributed.world_size=* ]]; then world_override="${2#distributed.world_size=}"; fi
            pass+=("$1" "$2"); shift 2 ;;
        --)  shift; pass+=("$@"); break ;;
        *)   pass+=("$1"); shift ;;
    esac
done

# distributed.world_size from the YAML, block (`distributed:` then indented `world_size: 8`) or flow
# (`distributed: {world_size: 8, ...}`) style; comments ignored. The trainer validates the config itself.
config_world_size() {
    local file="$1"
    [[ -r "$file" ]] || die "cannot read config $file"
    awk '
        { sub(/#.*/, "") }
        /^[^ \t]/ { in_dist = ($0 ~ /^distributed[ \t]*:/) }
        in_dist && match($0, /world_size[ \t]*:[ \t]*[0-9]+/) {
            s = substr($0, RSTART, RLENGTH); sub(/.*:[ \t]*/, "", s); print s; exit
        }
    ' "$file"
}

if [[ -z "$ranks" && -n "$world_override" ]]; then ranks="$world_override"; fi
if [[ -z "$ranks" && -n "$config" ]]; then ranks="$(config_world_size "$config")"; fi
[[ -n "$ranks" ]] || die "no rank count: pass -n N, or --config F with distributed.world_size"
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || die "rank count must be a positive integer, got '$ranks'"

command -v "$mpirun_cmd" >/dev/null 2>&1 || die "$mpirun_cmd not found (Debian: apt-get install openmpi-bin)"
[[ -x "$bin" ]] || die "swiftdraft binary $bin not found or not executable (build it: swift build -c release, or set SWIFTDRAFT_BIN)"

cores="$(nproc 2>/dev/null || echo 1)"
args=(-np "$ranks")
if [[ "$(id -u)" == "0" ]]; then args+=(--allow-run-as-root); fi

if (( ranks > cores )); then
    # Binding would pin several ranks to one core; yielding keeps ranks that wait in a collective off the CPU.
    args+=(--oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
    threads=1
else
    threads=$(( cores / ranks ))
fi
# One BLAS/OpenMP pool per rank, sized so ranks x threads fits the cores (a user's explicit setting wins).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"
args+=(-x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
# Local ranks inherit the environment anyway; -x carries the project's variables to ranks on other hosts too.
while read -r name; do
    [[ -n "$name" ]] && args+=(-x "$name")
done < <(compgen -e | grep -E '^(SWIFTDRAFT_|HABANA_)' | grep -vE '^SWIFTDRAFT_(BIN|LAUNCH_DRY_RUN)$' || true)

read -r -a extra <<< "${MPIRUN_ARGS:-}"
full=("$mpirun_cmd" "${args[@]}" "${extra[@]}" "$bin" train "${pass[@]}")

if [[ "${SWIFTDRAFT_LAUNCH_DRY_RUN:-0}" == "1" ]]; then
    printf '%q ' "${full[@]}"; echo
    exit 0
fi
# Preemption: mpirun itself answers SIGTERM by killing the job with a non-zero status, so the launcher catches
# SIGTERM/SIGINT and hands them to the ranks instead; each rank finishes its step, all of them write one checkpoint
# together and exit 0, and so does mpirun.
"${full[@]}" &
mpirun_pid=$!
forward() { pkill "-$1" -P "$mpirun_pid" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
status=0
while true; do
    wait "$mpirun_pid" && status=0 || status=$?
    # `wait` returns early (status > 128) when a trapped signal arrives; keep waiting while mpirun lives.
    kill -0 "$mpirun_pid" 2>/dev/null || break
done
exit "$status"
