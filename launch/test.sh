#!/usr/bin/env bash
# The test suite, as CI runs it: installs what is missing, fetches the real assets (tokenizer vocabularies, texts) into
# the cache, builds with optimisation (the numeric tests are tens of times slower in a debug build) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
if [ -x scripts/fetch-assets.sh ]; then
    scripts/fetch-assets.sh
fi
swift build -c release --build-tests
swift test -c release --skip-build "$@"
