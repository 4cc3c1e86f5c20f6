#!/usr/bin/env bash
# Run HERE (the development machine, which reaches Debian's package servers), before a device call:
# downloads the .deb files of the C++ libraries qrt builds against into .gpu-deps/, because the GPU
# machine has the CUDA toolchain but no -dev packages and no network. scripts/gpu-check.sh unpacks
# them with `dpkg -x` into /tmp/qrt-deps there. Pass the folder with the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu-deps
PKGS=(libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libcli11-dev
      libfmt-dev libfmt9
      # qrt serve's HTTP library and what its pkg-config file requires (headers, .pc files, .so)
      libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 zlib1g-dev libbrotli-dev libbrotli1)
mkdir -p "$DEST"
have_all=1
for p in "${PKGS[@]}"; do ls "$DEST"/"${p}"_*.deb >/dev/null 2>&1 || have_all=0; done
if [ "$have_all" = 1 ]; then
  echo "gpu-deps: all ${#PKGS[@]} packages already in $DEST"
else
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -qq
  (cd "$DEST" && apt-get download "${PKGS[@]}")
  ls -la "$DEST"
fi

# The default model's first 8 blocks (~50 MB, 45 MB xz-compressed; the whole GGUF is over what
# travels to the GPU machine) for the CPU-vs-GPU engine logits test there. Carry .gpu-model too.
MODEL_DIR=.gpu-model
SRC=$(bash scripts/fetch-model.sh 2>/dev/null | tail -1 || true)
if [ -f "$MODEL_DIR/smollm2-8-blocks.gguf.xz" ]; then
  echo "gpu-deps: $MODEL_DIR/smollm2-8-blocks.gguf.xz already there"
elif [ -n "$SRC" ] && [ -f "$SRC" ]; then
  python3 -c 'import gguf' 2>/dev/null || python3 -m pip install -q gguf
  mkdir -p "$MODEL_DIR"
  tmp=$(mktemp)
  python3 tools/truncate_gguf.py "$SRC" "$tmp" --layers 8 &&
    xz -6 -T2 -c "$tmp" > "$MODEL_DIR/smollm2-8-blocks.gguf.xz.tmp" &&
    mv "$MODEL_DIR/smollm2-8-blocks.gguf.xz.tmp" "$MODEL_DIR/smollm2-8-blocks.gguf.xz"
  rm -f "$tmp" "$MODEL_DIR/smollm2-8-blocks.gguf"
else
  echo "gpu-deps: default model not found (scripts/fetch-model.sh): the GPU engine logits test will skip"
fi

# llama.cpp's sources, the peer of the GPU decode benchmark (scripts/gpu-check.sh builds its
# llama-bench with CUDA there): the tree the llama-cpp-python sdist vendors (the version the CPU
# peer uses, bench/cpu_decode_vs_llamacpp.sh, whose cached copy is reused), pruned of what
# llama-bench does not build (docs, models, tests, examples, the server and its web UI, the Python
# converters, the other GPU backends): about 4 MB compressed. Carry .gpu-llama too.
LLAMA_DIR=.gpu-llama
LLAMA_CPP_PYTHON_VERSION=0.3.36
if [ -f "$LLAMA_DIR/llama-cpp-src.tar.xz" ]; then
  echo "gpu-deps: $LLAMA_DIR/llama-cpp-src.tar.xz already there"
elif ! (
  set -euo pipefail
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cached="${QRT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qrt}/peers/llama.cpp-$LLAMA_CPP_PYTHON_VERSION"
  mkdir -p "$tmp/llama.cpp"
  if [ -f "$cached/CMakeLists.txt" ]; then
    tar -C "$cached" --exclude=./build -cf - . | tar -C "$tmp/llama.cpp" -xf -
  else
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$tmp/sdist"
    tar -xzf "$tmp"/sdist/llama_cpp_python-*.tar.gz -C "$tmp/sdist"
    cp -a "$tmp"/sdist/llama_cpp_python-*/vendor/llama.cpp/. "$tmp/llama.cpp/"
  fi
  cd "$tmp/llama.cpp"
  rm -rf build docs models media tests examples benches pocs .git gguf-py conversion convert_*.py tools/ui tools/server
  for b in cann et hexagon metal opencl openvino sycl virtgpu vulkan webgpu musa hip zdnn zendnn kompute; do
    rm -rf "ggml/src/ggml-$b"
  done
  cd - >/dev/null
  mkdir -p "$LLAMA_DIR"
  tar -cJf "$LLAMA_DIR/llama-cpp-src.tar.xz.tmp" -C "$tmp" llama.cpp
  mv "$LLAMA_DIR/llama-cpp-src.tar.xz.tmp" "$LLAMA_DIR/llama-cpp-src.tar.xz"
  ls -la "$LLAMA_DIR/llama-cpp-src.tar.xz"
); then
  echo "gpu-deps: could not write $LLAMA_DIR/llama-cpp-src.tar.xz: the llama.cpp comparison will be skipped"
fi

# QRT_GPU_DEPS_LLAMA_BENCH=1: also build llama-bench here from those sources (CUDA, sm_90, static,
# no host-specific CPU code, no OpenMP) and carry it xz-compressed, so that scripts/gpu-check.sh
# need not build it on the GPU machine. Needs nvcc; on a 2-core machine about 80 minutes (47 of its
# 279 build steps took 13 minutes; most of the rest are CUDA template instances).
LLAMA_BENCH_XZ=$LLAMA_DIR/llama-bench-sm90.xz
if [ "${QRT_GPU_DEPS_LLAMA_BENCH:-0}" = 1 ] && [ ! -f "$LLAMA_BENCH_XZ" ] && [ -f "$LLAMA_DIR/llama-cpp-src.tar.xz" ]; then
  if ! (
    set -euo pipefail
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    tar -xJf "$LLAMA_DIR/llama-cpp-src.tar.xz" -C "$tmp"
    cmake -S "$tmp/llama.cpp" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA_NCCL=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_APP=OFF > "$tmp/configure.log"
    cmake --build "$tmp/build" --target llama-bench -j"$(nproc)" > "$tmp/build.log"
    strip "$tmp/build/bin/llama-bench"
    xz -9 -c "$tmp/build/bin/llama-bench" > "$LLAMA_BENCH_XZ.tmp"
    mv "$LLAMA_BENCH_XZ.tmp" "$LLAMA_BENCH_XZ"
    ls -la "$LLAMA_BENCH_XZ"
  ); then
    rm -f "$LLAMA_BENCH_XZ.tmp"
    echo "gpu-deps: could not build llama-bench here: gpu-check.sh builds it on the GPU machine"
  fi
fi
