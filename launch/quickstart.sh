#!/usr/bin/env bash
# The main job on its embedded default: FastDraft's whole recipe in miniature against the real target,
# SmolLM2-135M-Instruct (configs/recipes/quickstart.recipe through launch/recipe.sh): tokenize Shakespeare (text) and
# CPython's standard library (code) with SmolLM2's tokenizer, let SmolLM2 answer KD prompts at four temperatures and
# write Magpie instructions, train a 3.2M-parameter draft through pre-training, code and alignment in one process,
# measure it with `speculate` (acceptance, tau, MBSU, speedup per prompt set), export it (Q8_0 GGUF for llama.cpp's
# -md, and Hugging Face) and print the table. A few minutes on 2 cores; a rerun skips what is complete (--fresh
# starts over). The output lands in runs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
scripts/fetch-assets.sh
swift build -c release --product swiftdraft
exec launch/recipe.sh "$@" configs/recipes/quickstart.recipe
