#!/usr/bin/env bash
# The main job on its embedded default: tokenize CPython's standard library (bytes) and train a small draft on it in
# one process (configs/quickstart.yaml), printing loss, tokens/s and ETA. About two minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
swift build -c release --product swiftdraft
bin=.build/release/swiftdraft
if [ ! -f data/cpython-bytes/manifest.json ]; then
    "$bin" tokenize --tokenizer bytes --input /usr/lib/python3.11 --output data/cpython-bytes --val-fraction 0.02
fi
exec "$bin" train --config configs/quickstart.yaml --resume never --overwrite "$@"
