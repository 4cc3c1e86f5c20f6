#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu-check.sh (its build-gpu and the 30-block SmolLM2 file):
# decode A/B runs that need the same machine, alternating so that drift hits both sides.
#   1. the fused RoPE + KV store + attention kernel against the two unfused kernels
#      (QRT_CUDA_FUSED_ATTENTION=0);
#   2. every linear shape of the model at M = 1 on cuda_gemv and cuda_dequant (qrt bench);
#   3. decode with a tuning cache from `qrt tune --batch 1` against the default parameters.
# Prints one line per run and a summary line per experiment.
set -uo pipefail
cd "$(dirname "$0")/.."
SMOL=${1:-/tmp/qrt-smollm2-30-blocks.gguf}
B=build-gpu/bench/gpu_decode_bench
Q=build-gpu/qrt
T=$(mktemp -d)
tok() { python3 -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1]))['decode_tok_s'])" "$1" 2>/dev/null || echo "-"; }
med() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:] if x!='-']; print('%.1f' % statistics.median(v) if v else '-')" "$@"; }
echo "== 1. attention: fused kernel vs rope + attention (SmolLM2, 128 tokens after 128)"
A=(); U=()
for r in 1 2 3; do
  XDG_CACHE_HOME=$T/empty PROMPT=128 NEW=128 timeout 60 $B "$SMOL" $T/fa-$r.json > $T/fa-$r.log 2>&1; A+=($(tok $T/fa-$r.json))
  XDG_CACHE_HOME=$T/empty QRT_CUDA_FUSED_ATTENTION=0 PROMPT=128 NEW=128 timeout 60 $B "$SMOL" $T/ua-$r.json > $T/ua-$r.log 2>&1; U+=($(tok $T/ua-$r.json))
done
echo "fused attention ${A[*]} -> $(med "${A[@]}"); rope + attention ${U[*]} -> $(med "${U[@]}")"
sed -n '/decode step by op/,/total/p' $T/ua-1.log | head -16
echo "== 2. qrt bench, M = 1: cuda_gemv and cuda_dequant per shape"
XDG_CACHE_HOME=$T/empty timeout 90 $Q bench "$SMOL" --device cuda --batch 1,4 --backends cuda_gemv,cuda_dequant 2>&1 | tail -25
echo "== 3. decode with a tuning cache (qrt tune --batch 1) vs the default parameters"
XDG_CACHE_HOME=$T/tuned timeout 120 $Q tune "$SMOL" --device cuda --batch 1 --budget 40 2>&1 | tail -4
grep -o '"params":{[^}]*}' $T/tuned/qrt/tuning.json 2>/dev/null | sort | uniq -c | head -12
D=(); TU=()
for r in 1 2 3; do
  TUNED=1 XDG_CACHE_HOME=$T/empty PROMPT=128 NEW=128 timeout 60 $B "$SMOL" $T/d-$r.json > $T/d-$r.log 2>&1; D+=($(tok $T/d-$r.json))
  TUNED=1 XDG_CACHE_HOME=$T/tuned PROMPT=128 NEW=128 timeout 60 $B "$SMOL" $T/t-$r.json > $T/t-$r.log 2>&1; TU+=($(tok $T/t-$r.json))
done
echo "default params ${D[*]} -> $(med "${D[@]}"); tuned ${TU[*]} -> $(med "${TU[@]}")"
sed -n '/decode step by op/,/total/p' $T/t-1.log | head -16
