#!/usr/bin/env bash
# The test suite, as CI runs it: installs what is missing, fetches the real assets (tokenizer vocabularies, texts) into
# the cache, builds with optimisation (the numeric tests are tens of times slower in a debug build) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
# The tests compare against tokenizers/transformers/gguf live: they run the python of this venv.
SWIFTDRAFT_PYTHON="$(scripts/python-env.sh)"
export SWIFTDRAFT_PYTHON
if [ -x scripts/fetch-assets.sh ]; then
    scripts/fetch-assets.sh
fi
swift build -c release --build-tests
# The suites are XCTest; without this flag the empty Swift Testing run prints its "0 tests" line last.
set +e
swift test -c release --skip-build --disable-swift-testing "$@" 2>&1 | tee .build/test.log
status=${PIPESTATUS[0]}
set -e
# One plain closing line for whoever reads the log's end.
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with" .build/test.log | tail -1 || true)
if [[ $summary =~ Executed\ ([0-9]+)\ tests?,\ with\ (([0-9]+)\ tests?\ skipped\ and\ )?([0-9]+)\ failures? ]]; then
    total=${BASH_REMATCH[1]} skipped=${BASH_REMATCH[3]:-0} failed=${BASH_REMATCH[4]}
    echo "tests: $((total - skipped - failed)) passed, $failed failed, $skipped skipped"
fi
exit "$status"
