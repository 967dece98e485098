# Sourced by the benchmarks that race SwiftDraft against llama.cpp on SmolLM2 Q4_1 (bench-decode.sh,
# bench-inference.sh): sets here, root, rounds (ROUNDS, default 3), threads (THREADS, default 2), model (the GGUF
# under the asset cache) and bin (llama.cpp's binaries, built once per machine), and puts Swift on the PATH.
# The caller sets `bench_name` (for messages) first.
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
rounds="${ROUNDS:-3}"
threads="${THREADS:-2}"
model="$(find "$cache/smollm2" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -1)"
if [ -z "$model" ]; then
    echo "$bench_name: SmolLM2 Q4_1 GGUF not under $cache/smollm2 (run scripts/fetch-assets.sh)" >&2
    exit 1
fi
bin="$("$here/build-llama-cpp.sh")"
export PATH=/opt/swift/usr/bin:$PATH
