#!/usr/bin/env bash
# End to end: `qrt bench` on a layer shape, `qrt tune` on the default model, then `qrt plan
# --tuning-cache` shows the tuned parameters.
#   bash tests/cli/e2e_tune_bench.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_tune_bench.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# bench: a table with both CPU backends at M = 1 and 16 (short timing, we test the command, not speed).
timeout 60 "$QRT" bench --shape 576x1536 --batch 1,16 --min-time 0.05 --max-time 0.5 -t 2 \
  --json "$tmp/bench.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || bad "bench: exit $rc: $(tail -n 2 "$tmp/err")"
grep -q '576x1536' "$tmp/out" || bad "bench: the shape is not in the table"
grep -Eq '^cpu_simd +1 ' "$tmp/out" || bad "bench: no cpu_simd row at M=1"
grep -Eq '^cpu_simd +16 ' "$tmp/out" || bad "bench: no cpu_simd row at M=16"
grep -Eq '^cpu_ref +1 ' "$tmp/out" || bad "bench: no cpu_ref row at M=1"
[ -s "$tmp/bench.json" ] || bad "bench: --json wrote nothing"

# tune into a private cache (never the user's ~/.cache), then plan with it.
timeout 90 "$QRT" tune "$MODEL" --batch 1,16 --budget 5 --repeats 2 --warmup 1 -t 2 -q \
  --cache "$tmp/tuning.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || bad "tune: exit $rc: $(tail -n 2 "$tmp/err")"
[ -s "$tmp/tuning.json" ] || bad "tune: no cache file written"
timeout 60 "$QRT" plan "$MODEL" --tuning-cache "$tmp/tuning.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || bad "plan --tuning-cache: exit $rc: $(tail -n 2 "$tmp/err")"
grep -q '(tuned)' "$tmp/out" || bad "plan --tuning-cache: no layer shows '(tuned)' parameters"
grep -q "$tmp/tuning.json" "$tmp/out" || bad "plan --tuning-cache: the cache path is not shown"

# A corrupt cache is a clear error, and --ignore-bad-tuning-cache runs on defaults.
echo '{ this is not json' >"$tmp/bad.json"
timeout 60 "$QRT" plan "$MODEL" --tuning-cache "$tmp/bad.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "plan with a corrupt tuning cache: exit $rc, expected 1..127"
grep -q 'bad.json' "$tmp/err" || bad "plan with a corrupt tuning cache: the error does not name the file"
timeout 60 "$QRT" plan "$MODEL" --tuning-cache "$tmp/bad.json" --ignore-bad-tuning-cache >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] || bad "plan --ignore-bad-tuning-cache: non-zero exit"

[ "$fail" -eq 0 ] && echo "OK: e2e_tune_bench"
exit "$fail"
