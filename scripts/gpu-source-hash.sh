#!/usr/bin/env bash
# One line naming the source tree a binary is built from: the SHA-1 of every file under the
# directories and files the build reads (sorted paths, then contents). The same on the development
# machine and on the GPU machine (no git needed), so scripts/gpu-check.sh can tell whether a carried
# binary (scripts/gpu-prebuilt.sh) was built from the tree it runs in.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=()
for p in CMakeLists.txt cmake src include tests bench tools python; do [ -e "$p" ] && paths+=("$p"); done
find "${paths[@]}" -type f \
  ! -path 'bench/results/*' ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort |
  while IFS= read -r f; do printf '%s\n' "$f"; sha1sum < "$f"; done | sha1sum | cut -d' ' -f1
