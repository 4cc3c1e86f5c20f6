#!/usr/bin/env bash
# Installs, builds and runs the whole test suite:
#   1. build/       Release build (CUDA code compiled when nvcc exists; GPU tests skip without a GPU)
#   2. build-package/  qrt as other projects use it (tests/package/run.sh): installed and found with
#                   find_package, built by add_subdirectory as libqrt.so, `pip install .` + pytest
#   3. build-asan/  clang + AddressSanitizer/UBSan build of the parsers, CLI bad-input corpus, the C
#                   API and libFuzzer targets, each fuzzer run for a short bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
JOBS="${QRT_JOBS:-$(nproc)}"

echo "== qrt: release build and tests"
scripts/build.sh
MODEL=""
if MODEL="$(scripts/fetch-model.sh)"; then export QRT_DEFAULT_MODEL="$MODEL"; fi
(cd build && ctest --output-on-failure -j "$JOBS")

echo "== qrt: package (install + find_package, add_subdirectory + libqrt.so, pip install + pytest)"
QRT_JOBS="$JOBS" bash tests/package/run.sh build build-package

echo "== qrt: sanitizer build (ASan + UBSan) and fuzzers"
CC=clang CXX=clang++ cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQRT_CUDA=OFF \
  -DQRT_SANITIZE=ON -DQRT_FUZZ=ON -DQRT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j "$JOBS" -E '^(model|backends|cli_e2e_(run|quantize|calibration|perplexity|tune_bench|plan|serve))$')
