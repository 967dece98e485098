#!/usr/bin/env bash
# Build llama.cpp, the reference SwiftDraft's kernels and inference are measured and checked against, from the
# llama.cpp vendored in the llama-cpp-python==0.3.36 source archive (PyPI sdist), so every machine builds the same
# source. Cached under ${SWIFTDRAFT_CACHE:-~/.cache/swiftdraft}/llama.cpp/<version>/ (src/ the source tree with
# convert_hf_to_gguf.py and gguf-py, build/bin/ the tools): it builds once per machine, a rerun after an interrupted
# build resumes it, and concurrent runs wait for each other. Installs cmake/g++ from Debian when missing.
# Prints the bin directory on stdout; progress goes to stderr.
#   LLAMA_TARGETS="llama-quantize" scripts/build-llama-cpp.sh   builds only those targets (e.g. to get one tool early)
set -euo pipefail
version=0.3.36
cache="${SWIFTDRAFT_CACHE:-$HOME/.cache/swiftdraft}"
root="$cache/llama.cpp/$version"
src="$root/src"
build="$root/build"
bin="$build/bin"
# llama-quantize first: other tools (model loaders' tests) wait on it, and cmake builds targets in the order given
# only loosely, so it gets a pass of its own.
all_targets="llama-quantize llama-bench llama-perplexity llama-simple llama-cli llama-speculative llama-speculative-simple llama-server"
targets="${LLAMA_TARGETS:-$all_targets}"

log() { echo "build-llama-cpp: $*" >&2; }

have_all() {
    local t
    # A linker writes the binary last, so a present one is a finished one.
    for t in $targets; do [ -x "$bin/$t" ] || return 1; done
}

mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
    log "another build holds $root/.lock; waiting for it"
    flock 9
fi
if have_all; then
    echo "$bin"
    exit 0
fi

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${need[@]}" >&2
    fi
fi

if [ ! -f "$src/CMakeLists.txt" ]; then
    work="$(mktemp -d "$root/.download.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    log "downloading llama-cpp-python==$version (source archive) from PyPI"
    # Only this project's sdist: --no-binary :all: would also force its build backend to build from source.
    python3 -m pip download --no-deps --disable-pip-version-check -q --no-binary llama-cpp-python \
        -d "$work" "llama-cpp-python==$version" >&2
    sdist="$(ls "$work"/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)"
    if [ -z "$sdist" ]; then
        log "pip download: expected $work/llama_cpp_python-$version.tar.gz, found: $(ls "$work")"
        exit 1
    fi
    log "extracting vendor/llama.cpp"
    tar -xzf "$sdist" -C "$work" "llama_cpp_python-$version/vendor/llama.cpp"
    if [ ! -f "$work/llama_cpp_python-$version/vendor/llama.cpp/CMakeLists.txt" ]; then
        log "$sdist: expected vendor/llama.cpp/CMakeLists.txt inside"
        exit 1
    fi
    rm -rf "$src"
    mv "$work/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$work"
    trap - EXIT
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
    log "configuring in $build"
    cmake -S "$src" -B "$build" -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release >&2
fi
jobs="${LLAMA_BUILD_JOBS:-2}"
if echo " $targets " | grep -q " llama-quantize "; then
    log "building llama-quantize"
    cmake --build "$build" -j"$jobs" --target llama-quantize >&2
fi
rest="$(echo " $targets " | sed 's/ llama-quantize / /' | xargs)"
if [ -n "$rest" ]; then
    log "building $rest"
    # shellcheck disable=SC2086
    cmake --build "$build" -j"$jobs" --target $rest >&2
fi
for t in $targets; do
    if [ ! -x "$bin/$t" ]; then
        log "build finished but $bin/$t is missing"
        exit 1
    fi
done
log "done: $bin (sources and convert_hf_to_gguf.py in $src)"
echo "$bin"
