#!/usr/bin/env bash
# Configures and builds qrt into build/ (Release, CUDA auto-detected). Extra args go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${QRT_BUILD_DIR:-build}"
JOBS="${QRT_JOBS:-$(nproc)}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
