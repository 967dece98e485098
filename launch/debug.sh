#!/usr/bin/env bash
# The same config in one process (single-process debug mode): the trainer reproduces the configured world size by
# gradient accumulation, checks every kernel output for NaN/Inf and prints per-phase timings.
#
#   launch/debug.sh --config F [any other `swiftdraft train` option]...
#
# -n/--ranks are accepted (so a train.sh command line can be reused) and ignored: the world size comes from the config.
# Environment: SWIFTDRAFT_BIN (default .build/release/swiftdraft), SWIFTDRAFT_LAUNCH_DRY_RUN=1 (print, run nothing).
set -euo pipefail

bin="${SWIFTDRAFT_BIN:-.build/release/swiftdraft}"
pass=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n|--ranks|-np) shift; [[ $# -gt 0 ]] && shift ;;
        --ranks=*) shift ;;
        --) shift; pass+=("$@"); break ;;
        *) pass+=("$1"); shift ;;
    esac
done

[[ -x "$bin" ]] || { echo "debug.sh: swiftdraft binary $bin not found or not executable (build it: swift build -c release, or set SWIFTDRAFT_BIN)" >&2; exit 2; }

# A launcher's variables would make the binary think it is one rank of an MPI job.
unset OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_LOCAL_RANK PMIX_RANK PMI_RANK PMI_SIZE

full=("$bin" train --debug "${pass[@]}")
if [[ "${SWIFTDRAFT_LAUNCH_DRY_RUN:-0}" == "1" ]]; then
    printf '%q ' "${full[@]}"; echo
    exit 0
fi
exec "${full[@]}"
