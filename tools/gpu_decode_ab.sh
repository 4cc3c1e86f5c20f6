#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu-check.sh (its build-gpu and the 30-block SmolLM2 file):
# decode A/B runs that need the same machine, alternating so that drift hits every side.
#   1. SmolLM2: the fused decode ops as they are, then with QRT_CUDA_FUSED_ATTENTION=0 (RoPE + KV
#      store and attention as two kernels), QRT_CUDA_FUSED_PROJECTIONS=0 (norms, SiLU x up and
#      residual adds as kernels of their own) and both;
#   2. every linear shape of SmolLM2 at M = 1 and 4 on cuda_gemv and cuda_dequant (qrt bench);
#   3. SmolLM2 decode with a tuning cache from `qrt tune --batch 1` against the default parameters;
#   4. the random Llama-2-7B GPTQ model (written if missing): as it is against
#      QRT_CUDA_FUSED_PROJECTIONS=0.
# Prints one line per experiment with every run and the median (decode tokens/s, 128 tokens after
# a 128-token prompt, gpu_decode_bench's host loop).
set -uo pipefail
cd "$(dirname "$0")/.."
SMOL=${1:-/tmp/qrt-smollm2-30-blocks.gguf}
B=build-gpu/bench/gpu_decode_bench
Q=build-gpu/qrt
T=$(mktemp -d)
tok() { python3 -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1]))['decode_tok_s'])" "$1" 2>/dev/null || echo "-"; }
med() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:] if x!='-']; print('%.1f' % statistics.median(v) if v else '-')" "$@"; }
run() {  # run NAME MODEL REP [ENV=VALUE...]: one gpu_decode_bench run, prints its tokens/s
  local name=$1 model=$2 rep=$3; shift 3
  env XDG_CACHE_HOME=$T/empty PROMPT=128 NEW=128 "$@" timeout 90 $B "$model" $T/$name-$rep.json > $T/$name-$rep.log 2>&1
  tok $T/$name-$rep.json
}
# AB_QUICK=1: experiment 1 with one repetition and experiment 2 only (a short call).
REPS="1 2 3"; [ "${AB_QUICK:-0}" = 1 ] && REPS="1"
L7=/tmp/qrt-llama2-7b-gptq
if [ "${AB_QUICK:-0}" != 1 ] && [ ! -f $L7/config.json ]; then
  python3 tools/make_random_model.py $L7 --preset llama2-7b --bits 4 --group 128 > $T/make7b.log 2>&1 &
fi
echo "== 1. SmolLM2 decode: fused decode ops, without the fused attention, without the fused projections"
declare -A R
CONFIGS=("all" "no_attention:QRT_CUDA_FUSED_ATTENTION=0" "no_projections:QRT_CUDA_FUSED_PROJECTIONS=0"
         "neither:QRT_CUDA_FUSED_ATTENTION=0:QRT_CUDA_FUSED_PROJECTIONS=0")
for r in $REPS; do
  for c in "${CONFIGS[@]}"; do
    IFS=: read -r name e1 e2 <<< "$c"
    R[$name]+="$(run $name "$SMOL" $r ${e1:+$e1} ${e2:+$e2}) "
  done
done
for c in "${CONFIGS[@]}"; do name=${c%%:*}; echo "$name: ${R[$name]}-> $(med ${R[$name]})"; done
for name in no_attention no_projections; do echo "-- $name, rep 1:"; sed -n '/decode step by op/,/total/p' $T/$name-1.log | head -16; done
echo "== 2. qrt bench, M = 1 and 4: cuda_gemv and cuda_dequant per shape"
XDG_CACHE_HOME=$T/empty timeout 90 $Q bench "$SMOL" --device cuda --batch 1,4 --backends cuda_gemv,cuda_dequant 2>&1 | tail -25
[ "${AB_QUICK:-0}" = 1 ] && exit 0
echo "== 3. SmolLM2 decode with a tuning cache (qrt tune --batch 1) against the default parameters"
XDG_CACHE_HOME=$T/tuned timeout 120 $Q tune "$SMOL" --device cuda --batch 1 --budget 25 2>&1 | tail -4
python3 - "$T/tuned/qrt/tuning.json" <<'PY'
import json, sys
try: d = json.load(open(sys.argv[1]))
except Exception as e: sys.exit(f'no tuning cache: {e}')
for e in d.get('entries', []):
    print('  %-12s %5d x %-5d M=%-3d %-40s %.2f us' % (e['backend'], e['k'], e['n'], e['m'], json.dumps(e['params']), e['time_us']))
PY
D=""; TU=""
for r in 1 2 3; do
  D+="$(run default "$SMOL" $r TUNED=1) "
  TU+="$(run tuned "$SMOL" $r TUNED=1 XDG_CACHE_HOME=$T/tuned) "
done
echo "default params: ${D}-> $(med $D); tuned: ${TU}-> $(med $TU)"
sed -n '/decode step by op/,/total/p' $T/tuned-1.log | head -16
wait
if [ -f $L7/config.json ]; then
  echo "== 4. Llama-2-7B GPTQ decode: fused projections against QRT_CUDA_FUSED_PROJECTIONS=0"
  A=""; U=""
  for r in 1; do
    A+="$(run l7-all $L7 $r) "
    U+="$(run l7-noproj $L7 $r QRT_CUDA_FUSED_PROJECTIONS=0) "
  done
  echo "7B fused projections: ${A}-> $(med $A); without: ${U}-> $(med $U)"
fi
