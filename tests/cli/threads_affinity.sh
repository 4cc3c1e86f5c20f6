#!/usr/bin/env bash
# The default thread count comes from the CPU affinity mask (taskset, containers), in every
# command that runs CPU work, and counts read as English ("1 thread").
#   bash tests/cli/threads_affinity.sh <path-to-qrt> <tests/data>
# Skips when taskset is missing or the default model is absent (run scripts/fetch-model.sh).
set -uo pipefail
QRT="${1:?usage: threads_affinity.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
command -v taskset >/dev/null || { echo "SKIP: no taskset"; exit 0; }
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
cpu="$(taskset -pc $$ | sed 's/.*: *//; s/[,-].*//')"  # the first CPU we may use
one() { taskset -c "$cpu" "$QRT" "$@" >"$tmp/out" 2>"$tmp/err"; }

one run -m "$MODEL" -p "Hello" -n 2 || bad "run: exit $?: $(tail -n 2 "$tmp/err")"
grep -q 'on cpu (1 thread)' "$tmp/err" || bad "run under taskset: $(grep 'backends:' "$tmp/err")"

one plan "$MODEL" --device cpu --no-tuning-cache || bad "plan: exit $?"
grep -q '^device: .*(1 thread,' "$tmp/out" || bad "plan under taskset: $(grep '^device' "$tmp/out")"

head -c 1500 "${2:?}/text/kjv_ruth_jonah.txt" >"$tmp/text.txt"
one perplexity -m "$MODEL" -f "$tmp/text.txt" --ctx 64 --chunks 1 || bad "perplexity: exit $?: $(tail -n 2 "$tmp/err")"
grep -q 'on cpu (1 thread)' "$tmp/err" || bad "perplexity under taskset: $(grep 'backends:' "$tmp/err")"

one bench --shape 64x64 --batch 1 --backends cpu_ref --no-dense --min-time 0 --max-time 0.01 ||
  bad "bench: exit $?: $(tail -n 2 "$tmp/err")"
grep -q '^qrt bench on .*, 1 thread$' "$tmp/out" || bad "bench under taskset: $(head -n 1 "$tmp/out")"

one tune "$MODEL" --cache "$tmp/tune.json" --backends cpu_ref --batch 1 --repeats 1 --warmup 0 -q ||
  bad "tune: exit $?: $(tail -n 2 "$tmp/err")"
grep -q '^tuning .*(1 thread)' "$tmp/out" || bad "tune under taskset: $(head -n 1 "$tmp/out")"

# Without taskset the count is the process's CPUs (this machine may have more than one).
"$QRT" bench --shape 64x64 --batch 1 --backends cpu_ref --no-dense --min-time 0 --max-time 0.01 >"$tmp/out" 2>&1
n="$(taskset -pc $$ >/dev/null && nproc)"
want="$n threads"; [ "$n" = 1 ] && want="1 thread"
grep -q ", $want\$" "$tmp/out" || bad "bench without taskset: expected '$want': $(head -n 1 "$tmp/out")"

[ "$fail" -eq 0 ] && echo "OK: threads_affinity"
exit "$fail"
