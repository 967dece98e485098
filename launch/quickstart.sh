#!/usr/bin/env bash
# The main job on its embedded default: fetch the assets (cached), tokenize Shakespeare (web-like text) and CPython's
# standard library (code) with the target's tokenizer (SmolLM2, 49,152 ids), and train a small draft in two stages
# (pretrain on text, then code with a text/code mixture) in one process (configs/quickstart.yaml), printing loss,
# tokens/s and the validation loss per source. About two minutes of training on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
scripts/fetch-assets.sh
swift build -c release --product swiftdraft
bin=.build/release/swiftdraft
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
# The config names the tokenizer by a path inside the repo (data/ is ignored by git), so it does not depend on where
# the cache lives. tokenizer_config.json goes with it: it names the instruct model's end-of-turn token as EOS, which is
# part of the tokenizer's identity, so the copy is the same tokenizer as the target's GGUF (speculate checks that).
mkdir -p data/smollm2
for file in tokenizer.json tokenizer_config.json; do
    if ! cmp -s "$cache/tokenizers/smollm2/$file" "data/smollm2/$file"; then
        cp "$cache/tokenizers/smollm2/$file" "data/smollm2/$file.tmp"
        mv "data/smollm2/$file.tmp" "data/smollm2/$file"
        rm -rf data/shakespeare-smollm2 data/cpython-smollm2
    fi
done
if [ ! -f data/shakespeare-smollm2/manifest.json ]; then
    "$bin" tokenize --tokenizer data/smollm2/tokenizer.json --input "$cache"/shakespeare/shksprdata/texts/*_gut.txt \
        --output data/shakespeare-smollm2 --val-fraction 0.1
fi
if [ ! -f data/cpython-smollm2/manifest.json ]; then
    "$bin" tokenize --tokenizer data/smollm2/tokenizer.json --input /usr/lib/python3.11 \
        --output data/cpython-smollm2 --val-fraction 0.02
fi
exec "$bin" train --config configs/quickstart.yaml --resume never --overwrite "$@"
