#!/usr/bin/env bash
# Batched decode on the CPU: qrt's batched engine (build/bench/bench_batch_decode: one decode step
# of B sequences at context 128, and the single-sequence engine's decode step) next to llama.cpp's
# llama-batched-bench (B sequences after a 128-token prompt each, 32 decode steps) on the same
# GGUF, same threads, alternating in one run. Prints decode tokens/s per batch size B for both,
# their ratio, and each one's gain over its own B = 1.
#
#   bench/batch_decode_vs_llamacpp.sh [MODEL.gguf] [--threads T] [--batch 1,2,4,8,16,32] [--reps 3]
#                                     [--json FILE]
#
# The peer: $LLAMA_BATCHED_BENCH if set, else llama-batched-bench built once by
# bench/peers/llamacpp.sh (the llama.cpp sources of the llama-cpp-python sdist). Notes: qrt steps
# every sequence at position 128 over and over; llama.cpp's context grows from 128 to 160 during
# its 32 steps: both read about 128 positions of KV cache per row.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="" THREADS="$(nproc)" BATCH="1,2,4,8,16,32" REPS=3 JSON=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "batch_decode_vs_llamacpp: unknown option $1" >&2; exit 2 ;;
    *) MODEL="$1"; shift ;;
  esac
done
[[ "$BATCH" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "batch_decode_vs_llamacpp: --batch $BATCH: expected 1,2,4,..." >&2; exit 2; }
for v in THREADS REPS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "batch_decode_vs_llamacpp: --${v,,} ${!v}: expected a positive integer" >&2; exit 2; }
done
[ -n "$MODEL" ] || MODEL="$(scripts/fetch-model.sh)"
[ -s "$MODEL" ] || { echo "batch_decode_vs_llamacpp: $MODEL: no such model file" >&2; exit 2; }
[ -x build/bench/bench_batch_decode ] || cmake --build build --target bench_batch_decode -j "$(nproc)" >&2
LLAMA_BATCHED_BENCH="${LLAMA_BATCHED_BENCH:-$(bench/peers/llamacpp.sh llama-batched-bench)}"

IFS=, read -ra BS <<<"$BATCH"
max_b=0
for b in "${BS[@]}"; do [ "$b" -gt "$max_b" ] && max_b="$b"; done
filter="BM_SingleSequenceDecode|BM_BatchedDecodeStep/($(IFS='|'; echo "${BS[*]}"))/"

qrt_rates() {  # "B rate" lines, B = 0 for the single-sequence engine
  QRT_DEFAULT_MODEL="$MODEL" QRT_BENCH_THREADS="$THREADS" build/bench/bench_batch_decode \
    --benchmark_filter="$filter" --benchmark_format=json 2>/dev/null |
    python3 -c '
import json, re, sys
for b in json.load(sys.stdin)["benchmarks"]:
    m = re.match(r"BM_BatchedDecodeStep/(\d+)/", b["name"])
    print(m.group(1) if m else 0, b["tokens_per_s"])'
}
llama_rates() {  # "B rate" lines
  "$LLAMA_BATCHED_BENCH" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -c $(((128 + 32) * max_b)) -b 2048 -ub 512 \
    -npp 128 -ntg 32 -npl "$BATCH" --output-format jsonl 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        r = json.loads(line)
        print(r["pl"], r["speed_tg"])'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "model $MODEL, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), median of $REPS alternating runs"
declare -A q l
for rep in $(seq "$REPS"); do
  first=qrt; [ $((rep % 2)) = 0 ] && first=llama  # alternate: drift on a shared machine hits both
  for who in "$first" $([ "$first" = qrt ] && echo llama || echo qrt); do
    if [ "$who" = qrt ]; then
      while read -r b r; do q[$b]+="$r "; done < <(qrt_rates)
    else
      while read -r b r; do l[$b]+="$r "; done < <(llama_rates)
    fi
  done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
q1="$(med "${q[1]:-}")" l1="$(med "${l[1]:-}")"
printf '%-6s %14s %16s %10s %12s %14s\n' "B" "qrt tokens/s" "llama.cpp tok/s" "qrt/llama" "qrt vs B=1" "llama vs B=1"
rows=()
for b in "${BS[@]}"; do
  qm="$(med "${q[$b]:-}")" lm="$(med "${l[$b]:-}")"
  printf '%-6s %14.1f %16.1f %10s %12s %14s\n' "$b" "$qm" "$lm" "$(ratio "$qm" "$lm")" "$(ratio "$qm" "$q1")" "$(ratio "$lm" "$l1")"
  rows+=("{\"batch\": $b, \"qrt_tok_s\": $qm, \"llamacpp_tok_s\": $lm, \"qrt_runs\": [$(tr ' ' ',' <<<"${q[$b]% }")], \"llamacpp_runs\": [$(tr ' ' ',' <<<"${l[$b]% }")]}")
done
single="$(med "${q[0]:-}")"
printf 'qrt single-sequence engine (the `qrt run` decode step): %.1f tokens/s\n' "$single"

if [ -n "$JSON" ]; then
  {
    echo "{\"model\": \"$(basename "$MODEL")\", \"threads\": $THREADS, \"context\": 128, \"qrt_single_sequence_tok_s\": $single,"
    echo " \"peer\": \"llama.cpp llama-batched-bench ($LLAMA_BATCHED_BENCH)\", \"rows\": [$(IFS=,; echo "${rows[*]}")]}"
  } >"$JSON"
  echo "wrote $JSON"
fi
