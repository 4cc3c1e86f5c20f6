#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu-check.sh (its build-gpu and the 30-block SmolLM2 file):
# decode A/B runs that need the same machine, alternating so that drift hits every side.
#   1. SmolLM2, 128 tokens after a 128-token prompt: the default decode ops, then with
#      QRT_CUDA_SHORT_ATTENTION=0 (RoPE + KV store and attention as two kernels), with
#      QRT_CUDA_FUSED_ATTENTION=1 (the split fused kernel from position 0) and with
#      QRT_CUDA_FUSED_PROJECTIONS=0 (norms, SiLU x up and residual adds as kernels of their own)
#      and with GEMV_BULK_ALL=0 (cuda_gemv's register-ring kernel on every layer);
#   2. the same after 1536- and 3072-token prompts: the default against the short-context kernel
#      everywhere, then after
#      256 ... 1024, the short-context kernel against the split one (where
#      QRT_CUDA_FUSED_ATTENTION_FROM should switch);
#   3. the random Llama-2-7B GPTQ model (written if missing): default (hidden 4096: unfused
#      projections) against QRT_CUDA_FUSED_PROJECTIONS=sumsq (and, AB_FULL=1, =1 and =no_norm),
#      with per-op profiles (each 7B run ~40 s, its engine build ~18 s of it: two reps of the four
#      configurations of AB_FULL=1 need ~5.5 minutes, more than 220 s did on 2026-12-07);
#   4. where ncu runs: every kernel's duration in two SmolLM2 decode steps (graph nodes one at a
#      time, serialized; gpu_decode_bench's PROFILE_STEPS window, nothing else), summed by kernel name;
#   5. AB_FULL=1 only: every SmolLM2 linear shape at M = 1 and 4 on cuda_gemv and cuda_dequant
#      (qrt bench), and decode with a `qrt tune --batch 1` cache against the default parameters;
#   6. where ncu runs: Nsight Compute's launch, occupancy, speed-of-light and warp-state sections
#      for the attention, RoPE and GEMV kernels of one step, caches kept warm.
# AB_7B_REPS="1" sets section 3's repetitions (default 1 2); AB_RUN_TIMEOUT a run's limit (90 s).
# AB_SECTIONS="3 4" runs only those sections (default 1 2 2b 3 4 6; 5 with AB_FULL=1; 2b is the
# second half of 2; AB_2B_PROMPTS="768 1024" sets its prompt lengths).
# Prints one line per experiment with every run and the median (decode tokens/s, gpu_decode_bench's
# host loop).
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
  env XDG_CACHE_HOME=$T/empty PROMPT=128 NEW=128 "$@" timeout ${AB_RUN_TIMEOUT:-90} $B "$model" $T/$name-$rep.json > $T/$name-$rep.log 2>&1
  # Every run's log also lands in $OUT/ab.log (one file: few files come back from the device), so
  # that a call cut short still shows what ran.
  [ -n "${OUT:-}" ] && { echo "=== $name rep $rep ($*)"; cat $T/$name-$rep.log; } >> "$OUT/ab.log"
  tok $T/$name-$rep.json
}
profile() { sed -n '/decode step by op/,/total/p' "$1" | head -18; }
REPS=${AB_REPS:-"1 2 3"}
want() { [[ " ${AB_SECTIONS:-1 2 2b 3 4 6} " == *" $1 "* ]]; }
L7=/tmp/qrt-llama2-7b-gptq
if want 3 && [ ! -f $L7/config.json ]; then
  python3 tools/make_random_model.py $L7 --preset llama2-7b --bits 4 --group 128 > $T/make7b.log 2>&1 &
fi

if want 1; then
echo "== 1. SmolLM2 decode (128 after 128): default (short-context attention), the pair it replaces,"
echo "   the split fused attention, without the fused projections, cuda_gemv without its bulk-copy kernel"
declare -A R
CONFIGS=("default" "pair_attention:QRT_CUDA_SHORT_ATTENTION=0" "fused_attention:QRT_CUDA_FUSED_ATTENTION=1"
         "no_projections:QRT_CUDA_FUSED_PROJECTIONS=0" "gemv_no_bulk:GEMV_BULK_ALL=0")
for r in $REPS; do
  for c in "${CONFIGS[@]}"; do
    IFS=: read -r name e1 <<< "$c"
    R[$name]+="$(run $name "$SMOL" $r ${e1:+$e1}) "
  done
done
for c in "${CONFIGS[@]}"; do name=${c%%:*}; echo "$name: ${R[$name]}-> $(med ${R[$name]})"; done
echo "-- default, rep 1:"; profile $T/default-1.log
echo "-- the pair, rep 1:"; profile $T/pair_attention-1.log | grep -E "attention|rope|graph step"
fi

if want 2; then
echo "== 2. SmolLM2 decode after 1536- and 3072-token prompts: default (the split fused attention"
echo "   from position 1536) against the short-context kernel everywhere"
for P in 1536 3072; do
  D=""; F=""
  for r in 1 2; do
    D+="$(run long$P-default "$SMOL" $r PROMPT=$P) "
    F+="$(run long$P-short "$SMOL" $r PROMPT=$P QRT_CUDA_FUSED_ATTENTION_FROM=1000000) "
  done
  echo "prompt $P: default ${D}-> $(med $D); short-context kernel ${F}-> $(med $F)"
  grep -E "^  attention|rope" $T/long$P-default-1.log $T/long$P-short-1.log | head -6
done

fi

if want 2b; then
echo "== 2b. where the split fused attention starts to win over the short-context kernel (the latter"
echo "   at every position: QRT_CUDA_FUSED_ATTENTION_FROM=1000000), 128 tokens after 256 ... 1024"
for P in ${AB_2B_PROMPTS:-256 384 512 768 1024}; do
  D=""; F=""
  for r in 1 2; do
    D+="$(run x$P-short "$SMOL" $r PROMPT=$P QRT_CUDA_FUSED_ATTENTION_FROM=1000000) "
    F+="$(run x$P-fused "$SMOL" $r PROMPT=$P QRT_CUDA_FUSED_ATTENTION=1) "
  done
  echo "prompt $P: short-context kernel ${D}-> $(med $D); split fused attention ${F}-> $(med $F)"
done
fi

wait
if want 3 && [ -f $L7/config.json ]; then
  echo "== 3. Llama-2-7B GPTQ decode: default (hidden 4096: nothing in the projections) against"
  echo "   QRT_CUDA_FUSED_PROJECTIONS=1 (all in them), =no_norm (SiLU x up and residual adds) and"
  echo "   =sumsq (all in them, the norms from the producers' partial sums of squares)"
  # One line per run as it ends (a 7B run takes 40-60 s, 20-25 s of it the engine build: a call
  # cut short by its time limit still prints what ran).
  C7=("default" "sumsq:QRT_CUDA_FUSED_PROJECTIONS=sumsq")
  [ "${AB_FULL:-0}" = 1 ] && C7+=("fused:QRT_CUDA_FUSED_PROJECTIONS=1" "no-norm:QRT_CUDA_FUSED_PROJECTIONS=no_norm")
  for r in ${AB_7B_REPS:-1 2}; do
    for c in "${C7[@]}"; do
      IFS=: read -r name e1 <<< "$c"
      t0=$SECONDS
      v=$(run l7-$name $L7 $r ${e1:+$e1})
      echo "7B $name rep $r: $v tok/s ($((SECONDS - t0)) s; $(grep -o 'engine build [0-9.]* s' $T/l7-$name-$r.log | head -1))"
    done
  done
  echo "-- default:"; profile $T/l7-default-1.log
  [ -f $T/l7-no-norm-1.log ] && { echo "-- all but the norms in the projections:"; profile $T/l7-no-norm-1.log; }
  echo "-- sumsq:"; profile $T/l7-sumsq-1.log
fi

if command -v ncu > /dev/null; then
  # ncu_table CSV LABEL: every kernel's launches and median duration, and its share of the total.
  # qrt's own output (generated text) shares stdout with ncu's CSV: it starts at ncu's header row.
  cat > $T/ncu_table.py <<'PY'
import csv, sys, collections, statistics
rows = list(csv.reader(open(sys.argv[1], errors='replace')))
at = next((i for i, r in enumerate(rows) if 'Kernel Name' in r and 'Metric Value' in r), None)
if at is None: sys.exit('no ncu CSV header in %s (%d lines)' % (sys.argv[1], len(rows)))
rows = [r for r in rows[at:] if len(r) == len(rows[at])]
h = rows[0]; ki = h.index('Kernel Name'); vi = h.index('Metric Value'); ui = h.index('Metric Unit')
t = collections.defaultdict(list)
for r in rows[1:]:
    v = float(r[vi].replace(',', ''))
    name = r[ki].replace('(anonymous namespace)::', '').replace('void ', '').split('(')[0][-70:]
    t[name].append(v / 1000 if r[ui] == 'nsecond' else v)
total = sum(sum(v) for v in t.values())
for k, v in sorted(t.items(), key=lambda kv: -sum(kv[1])):
    print('  %s %-70s %4d launches, median %7.2f us, %5.1f %%' % (sys.argv[2], k, len(v), statistics.median(v), 100 * sum(v) / total))
print('  %s total %.1f us over %d launches' % (sys.argv[2], total, sum(len(v) for v in t.values())))
PY
  # The profiled kernels: gpu_decode_bench's PROFILE_STEPS graph decode steps after a 128-token
  # prompt (cudaProfilerStart/Stop around them; ncu --profile-from-start off), nothing else.
  nb() { env XDG_CACHE_HOME=$T/empty PROMPT=128 NEW=8 "$@"; }
  if want 4; then
  echo "== 4. ncu: kernel durations of two SmolLM2 decode steps (graph nodes one at a time)"
  nb PROFILE_STEPS=2 timeout 150 ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum \
    --csv $B "$SMOL" > $T/ncu.csv 2> $T/ncu.err
  python3 $T/ncu_table.py $T/ncu.csv "step"
  tail -3 $T/ncu.err
  echo "-- the attention kernels of those steps: default (short-context kernel) against the split fused one"
  for fa in default 1; do
    ev=""; [ $fa = 1 ] && ev=QRT_CUDA_FUSED_ATTENTION=1
    nb PROFILE_STEPS=2 $ev timeout 90 ncu --profile-from-start off --clock-control none \
      --metrics gpu__time_duration.sum --csv -k regex:"attention|rope" $B "$SMOL" > $T/ncu-att-$fa.csv 2>/dev/null
    python3 $T/ncu_table.py $T/ncu-att-$fa.csv "attention=$fa"
  done
  fi
  if want 6; then
  echo "== 6. ncu sections of one step's attention, RoPE and GEMV kernels (caches kept: as in the step)"
  nb PROFILE_STEPS=1 timeout 150 ncu --profile-from-start off --clock-control none --cache-control none \
    --section LaunchStats --section Occupancy --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
    -k regex:"attention|rope|gemv_kernel" --launch-count 7 $B "$SMOL" > $T/ncu-sections.txt 2>&1
  grep -E '^  [a-z_].*\(|Duration|Registers Per|Block Size|Grid Size|Achieved Occupancy|Theoretical Occ|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Eligible Warps|Memory Throughput|Compute \(SM\)' \
    $T/ncu-sections.txt | cut -c1-150 | head -120
  cp $T/ncu-sections.txt /tmp/qrt-logs/ 2>/dev/null
  fi
fi


[ "${AB_FULL:-0}" = 1 ] || want 5 || exit 0
echo "== 5a. qrt bench, M = 1 and 4: cuda_gemv and cuda_dequant per shape"
XDG_CACHE_HOME=$T/empty timeout 90 $Q bench "$SMOL" --device cuda --batch 1,4 --backends cuda_gemv,cuda_dequant 2>&1 | tail -25
echo "== 5b. SmolLM2 decode with a tuning cache (qrt tune --batch 1) against the default parameters"
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
  D+="$(run default-params "$SMOL" $r TUNED=1) "
  TU+="$(run tuned "$SMOL" $r TUNED=1 XDG_CACHE_HOME=$T/tuned) "
done
echo "default params: ${D}-> $(med $D); tuned: ${TU}-> $(med $TU)"
profile $T/tuned-1.log
