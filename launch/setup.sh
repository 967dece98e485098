#!/usr/bin/env bash
# Installs what SwiftDraft needs on a fresh Debian machine, skipping what is already there:
# Debian's OpenBLAS, Open MPI and HDF5 (libraries, headers, mpirun, h5dump), and the Python packages the tests use
# to check our files with users' tools (h5py, numpy). Runs as root, or through sudo.
set -euo pipefail

packages=(pkg-config libopenblas-dev libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import h5py, numpy' 2>/dev/null; then
    echo "setup: installing h5py and numpy from PyPI"
    python3 -m pip install -q h5py numpy
fi
command -v swift >/dev/null || { echo "setup: swift not found on PATH (expected the Swift 6 toolchain, e.g. /opt/swift/usr/bin)" >&2; exit 1; }
