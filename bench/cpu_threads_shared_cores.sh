#!/usr/bin/env bash
# Decode speed of `qrt run` when the cores are not all ours: the default thread count and the
# thread pool under (a) the machine as it is, (b) `taskset -c 0` (one CPU in the affinity mask),
# (c) `taskset -c 0 -t 2` (more threads than CPUs), (d) one competing busy process, with the
# default threads and with -t 1 as the floor to beat. Several binaries (e.g. before/after a pool
# change) alternate within each repetition; medians and ranges per case and binary.
#
#   bench/cpu_threads_shared_cores.sh [--model M] [--n 64] [--reps 5] [--nice] QRT [QRT2 ...]
#
# --nice runs the whole measurement in a session of its own whose scheduling group has nice -20
# (Linux autogroups; needs root): the scheduler then gives it nearly all of the CPU time that
# other jobs of a shared machine would take, so (a) is close to free cores and (d) is close to
# "exactly one competing process" (qrt and the busy loop share the cores as usual between
# themselves). The competing process is not pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

ARGS=("$@")
MODEL="" N=64 REPS=5 NICE="" BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --nice) NICE=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "cpu_threads_shared_cores: unknown option $1" >&2; exit 2 ;;
    *) BINS+=("$1"); shift ;;
  esac
done
[ ${#BINS[@]} -gt 0 ] || BINS=(build/qrt)
if [ -n "$NICE" ] && [ -z "${QRT_BENCH_OWN_GROUP:-}" ]; then
  QRT_BENCH_OWN_GROUP=1 exec setsid -w "$0" "${ARGS[@]}"
fi
if [ -n "$NICE" ]; then
  echo -20 >/proc/self/autogroup || { echo "cpu_threads_shared_cores: cannot renice the autogroup" >&2; exit 2; }
fi
[ -n "$MODEL" ] || MODEL="$(scripts/fetch-model.sh)"
command -v taskset >/dev/null || { echo "cpu_threads_shared_cores: needs taskset (util-linux)" >&2; exit 2; }
PROMPT="Once upon a time, in a small village by the sea,"
tmp="$(mktemp -d)"; busy=""
cleanup() { [ -z "$busy" ] || kill "$busy" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

decode_rate() {  # decode_rate QRT [wrapper...] -- [run args...]: prints tokens/s of the decode
  local qrt="$1"; shift
  local -a wrap=()
  while [ "$1" != "--" ]; do wrap+=("$1"); shift; done
  shift
  ${wrap[@]+"${wrap[@]}"} "$qrt" run -m "$MODEL" -p "$PROMPT" -n "$N" "$@" 2>"$tmp/err" >/dev/null
  sed -n 's/^qrt: decode: .*(\([0-9.]*\) tokens\/s).*/\1/p' "$tmp/err"
}

cases=("free:--" "taskset -c 0:taskset -c 0 --" "taskset -c 0, -t 2:taskset -c 0 -- -t 2"
       "busy process:--" "busy process, -t 1:-- -t 1")
for c in "${cases[@]}"; do
  label="${c%%:*}"; spec="${c#*:}"
  if [[ "$label" == busy* ]] && [ -z "$busy" ]; then
    bash -c 'while :; do :; done' & busy=$!
  fi
  read -r -a args <<<"$spec"
  for ((r = 0; r < REPS; r++)); do
    for b in "${!BINS[@]}"; do
      echo "$(decode_rate "${BINS[$b]}" "${args[@]}")" >>"$tmp/case-$b"
    done
  done
  for b in "${!BINS[@]}"; do
    sort -n "$tmp/case-$b" | awk -v l="$label" -v bin="${BINS[$b]}" '
      { v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "%-20s %-32s median %6.1f tokens/s (%s-%s, %d runs)\n", l, bin, m, v[1], v[NR], NR }'
    rm -f "$tmp/case-$b"
  done
done
