#!/usr/bin/env bash
# End-to-end CPU speed of `qrt run` next to llama.cpp's llama-bench on the same GGUF, same threads,
# same machine, alternating in one run: decode (tokens/s while generating N tokens from a short
# prompt) and prompt processing (tokens/s over a ~P-token prompt).
#
#   bench/cpu_decode_vs_llamacpp.sh [MODEL.gguf] [--threads T] [--n 64,512] [--reps 3] [--json FILE]
#
# The peer: $LLAMA_BENCH if set, else llama-bench built once by bench/peers/llamacpp.sh from the
# llama.cpp sources that the llama-cpp-python sdist on PyPI vendors (pip download, nothing
# installed; about 10 minutes on 2 cores), cached in ~/.cache/qrt/peers/. qrt is built/used from build/qrt (scripts/build.sh).
# Notes: llama-bench decodes from an empty context with random tokens, qrt from a 13-token prompt
# with greedy sampling, so both generate N tokens over a context growing to about N.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="" THREADS="$(nproc)" NS="64,512" REPS=3 JSON="" PP=512
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --n) NS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "cpu_decode_vs_llamacpp: unknown option $1" >&2; exit 2 ;;
    *) MODEL="$1"; shift ;;
  esac
done
[ -n "$MODEL" ] || MODEL="$(scripts/fetch-model.sh)"
[ -s "$MODEL" ] || { echo "cpu_decode_vs_llamacpp: $MODEL: no such model file" >&2; exit 2; }
[ -x build/qrt ] || scripts/build.sh >&2

LLAMA_BENCH="${LLAMA_BENCH:-$(bench/peers/llamacpp.sh llama-bench)}"

PROMPT="Once upon a time, in a small village by the sea,"
# A long prompt for prompt processing: the committed KJV text, cut to about $PP tokens.
LONG_PROMPT="$(head -c $((PP * 4)) tests/data/text/kjv_ruth_jonah.txt)"

qrt_rate() {  # $1 = "decode" or "prompt"; the rest: qrt run arguments
  local what="$1"; shift
  build/qrt run -m "$MODEL" -t "$THREADS" "$@" 2>&1 >/dev/null | sed -n "s/^qrt: $what: .*(\([0-9.]*\) tokens\/s).*/\1/p"
}
llama_rate() {  # llama-bench args; prints the mean tokens/s of its one row
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -r 1 -o csv "$@" 2>/dev/null |
    awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "avg_ts") c = i; next} c {gsub(/"/, "", $c); print $c}'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

rows=()
run_case() {  # name, qrt args..., --, llama args...
  local name="$1"; shift
  local what="decode"; [[ "$name" == pp* ]] && what="prompt"
  local qargs=() largs=() seen=0
  for a in "$@"; do
    if [ "$a" = "--" ]; then seen=1; elif [ $seen = 0 ]; then qargs+=("$a"); else largs+=("$a"); fi
  done
  local q=() l=()
  for _ in $(seq "$REPS"); do  # alternate, so drift on a shared machine hits both
    q+=("$(qrt_rate "$what" "${qargs[@]}")")
    l+=("$(llama_rate "${largs[@]}")")
  done
  local qm lm
  qm="$(printf '%s\n' "${q[@]}" | median)"
  lm="$(printf '%s\n' "${l[@]}" | median)"
  printf '%-8s  qrt %8.1f tokens/s  llama.cpp %8.1f tokens/s  qrt / llama.cpp %5.2f   (qrt: %s; llama.cpp: %s)\n' \
    "$name" "$qm" "$lm" "$(awk -v a="$qm" -v b="$lm" 'BEGIN{print a/b}')" "${q[*]}" "${l[*]}"
  rows+=("{\"case\": \"$name\", \"qrt_tok_s\": $qm, \"llamacpp_tok_s\": $lm, \"qrt_runs\": [$(IFS=,; echo "${q[*]}")], \"llamacpp_runs\": [$(IFS=,; echo "${l[*]}")]}")
}

echo "model $MODEL, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), median of $REPS alternating runs"
IFS=, read -ra NLIST <<< "$NS"
for n in "${NLIST[@]}"; do
  run_case "tg$n" -p "$PROMPT" -n "$n" -- -p 0 -n "$n"
done
run_case "pp$PP" -p "$LONG_PROMPT" -n 1 --max-input-length 4096 -- -p "$PP" -n 0

if [ -n "$JSON" ]; then
  {
    echo "{\"model\": \"$(basename "$MODEL")\", \"threads\": $THREADS, \"peer\": \"llama.cpp llama-bench ($LLAMA_BENCH)\","
    echo " \"rows\": [$(IFS=,; echo "${rows[*]}")]}"
  } > "$JSON"
  echo "wrote $JSON"
fi
