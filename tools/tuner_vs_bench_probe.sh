#!/usr/bin/env bash
# Diagnostic for docs/KNOWN_ISSUES.md #12 (run on the GPU machine after scripts/gpu-check.sh, which
# builds build-gpu/qrt and writes the random Llama-2-7B model): does the same cuda_gemv kernel
# (4096x11008, M = 4) time differently in `qrt tune` and `qrt bench`? Times the default and the
# {"split":2,"wt":4} candidate by each path, twice.
MODEL=${1:-/tmp/qrt-llama2-7b-gptq}
OUT=${OUT:-/tmp}
Q=build-gpu/qrt
for i in 1 2; do
  echo "== tune $i (cuda_gemv, M = 4)"
  $Q tune "$MODEL" --device cuda --backends cuda_gemv --batch 4 --cache "$OUT/probe-cache.json" --retune \
    --repeats 9 -q -v 2>&1 | grep -E '4096x11008|4096x12288|not confirmed' | head -8
done
for p in '{"split":0,"wt":0}' '{"split":1,"wt":2}' '{"split":2,"wt":4}' '{"split":2,"wt":2}'; do
  echo "== bench cuda_gemv $p (random weights, same shape)"
  $Q bench --device cuda --shape 4096x11008 --backends cuda_gemv --batch 4 --params "$p" 2>&1 | grep -E '^cuda_gemv' | head -2
done
echo "== bench plan with the probe cache (model weights)"
$Q bench "$MODEL" --device cuda --backends plan --batch 4 --tuning-cache "$OUT/probe-cache.json" 2>&1 \
  | grep -A12 'tuned plan vs default plan'
