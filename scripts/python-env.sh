#!/usr/bin/env bash
# The Python environment the tests use to check SwiftDraft against users' tools and reference implementations:
# a virtual environment under the asset cache with the packages of scripts/requirements-test.txt (no PyTorch: the
# references that need it are committed fixtures made by scripts/reference/*.py). Idempotent; prints the python path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
venv="$cache/venv"
requirements="$here/requirements-test.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$cache"
    python3 -m venv "$venv" >&2
fi
if ! cmp -s "$requirements" "$stamp"; then
    echo "python-env: installing $(tr '\n' ' ' < "$requirements")into $venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
