#!/usr/bin/env bash
# Run HERE (the development machine) before a device call that wants no build on the GPU machine:
# builds the named targets in build-cuda (CUDA, sm_90) and packs each binary xz-compressed into
# .gpu-bin/, with .gpu-bin/SOURCES naming the source tree it was built from. Carry .gpu-bin (and
# .gpu-deps: the binaries load libfmt, cpp-httplib and OpenSSL from there) and set
# GPU_CHECK_PREBUILT=1: scripts/gpu-check.sh then unpacks the binaries whose source tree matches
# the one it runs in and builds only the rest. A fresh GPU machine spends 55-85 s building them,
# most of it on the library every target links, so the saving is whole only where every target a
# call needs is carried. What travels is 64 MiB in all: each binary is 11-12 MB compressed, next
# to .gpu-deps (7 MB) and .gpu-model (44 MB), so a call with the model carries test_backends alone,
# and a kernel-test call without it (GPU_CHECK_TARGETS=test_backends) needs no build at all.
#   scripts/gpu-prebuilt.sh [TARGET ...]   (default: test_backends; also gpu_decode_bench, qrt_cli)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(test_backends)
BUILD=${QRT_PREBUILT_BUILD_DIR:-build-cuda}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  bash scripts/deps.sh
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQRT_CUDA=ON -DQRT_CUDA_ARCHS=90
fi
grep -q 'QRT_CUDA_ARCHS:[A-Z]*=90$' "$BUILD/CMakeCache.txt" ||
  { echo "gpu-prebuilt: $BUILD is not configured with QRT_CUDA_ARCHS=90" >&2; exit 1; }
cmake --build "$BUILD" --target "${TARGETS[@]}"
mkdir -p .gpu-bin
rm -f .gpu-bin/*.xz
for t in "${TARGETS[@]}"; do
  case "$t" in
    test_backends) bin=tests/test_backends ;;
    qrt_cli) bin=qrt ;;
    *) bin=bench/$t ;;
  esac
  [ -x "$BUILD/$bin" ] || { echo "gpu-prebuilt: no $BUILD/$bin" >&2; exit 1; }
  mkdir -p ".gpu-bin/$(dirname "$bin")"
  xz -T2 -6 -c "$BUILD/$bin" > ".gpu-bin/$bin.xz"
done
bash scripts/gpu-source-hash.sh > .gpu-bin/SOURCES
nvcc --version | tail -1 > .gpu-bin/NVCC
du -sh .gpu-bin
