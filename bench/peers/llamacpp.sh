#!/usr/bin/env bash
# Builds one llama.cpp program once and prints its path: the CPU peer of the benchmarks under
# bench/ (llama-bench for bench/cpu_decode_vs_llamacpp.sh, llama-server for bench/serve_load.sh,
# llama-batched-bench for bench/batch_decode_vs_llamacpp.sh).
#
#   bench/peers/llamacpp.sh llama-bench|llama-server|llama-batched-bench
#
# The sources are the llama.cpp that the llama-cpp-python sdist on PyPI vendors (pip download,
# nothing installed), pinned to one version so every benchmark compares against the same code;
# the build lives in ~/.cache/qrt/peers/llama.cpp-VERSION (native CPU flags, no CURL / OpenSSL).
# The first build takes about 10 minutes on 2 cores; later calls only print the path.
set -euo pipefail
TARGET="${1:?usage: llamacpp.sh llama-bench|llama-server|llama-batched-bench}"
case "$TARGET" in llama-bench|llama-server|llama-batched-bench) ;; *) echo "llamacpp.sh: unknown target $TARGET" >&2; exit 2 ;; esac

LLAMA_CPP_PYTHON_VERSION=0.3.36
PEERS="${QRT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qrt}/peers"
src="$PEERS/llama.cpp-$LLAMA_CPP_PYTHON_VERSION"
bin="$src/build/bin/$TARGET"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

echo "llamacpp.sh: building $TARGET once (llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sources)..." >&2
mkdir -p "$PEERS"
if [ ! -f "$src/CMakeLists.txt" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$tmp" >&2
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  rm -rf "$src" && mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$src"
fi
# One build folder serves every program: the server is configured in, and building one target
# leaves the others' objects in place.
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF >&2
cmake --build "$src/build" --target "$TARGET" -j "$(nproc)" >&2
[ -x "$bin" ] || { echo "llamacpp.sh: the build did not produce $bin" >&2; exit 1; }
echo "$bin"
