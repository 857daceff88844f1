#!/usr/bin/env bash
# tools/run_recipe.sh: on a fresh Debian machine, install what dprun needs, build it (Release,
# CUDA where nvcc exists) and run the main recipe. Extra arguments go to the recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh

dp_ensure_packages
dp_cuda_path
dp_build build -DCMAKE_BUILD_TYPE=Release -DDP_CUDA=AUTO
exec ./build/dprun recipes/bert_snli.lua "$@"
