#!/usr/bin/env bash
# `qrt tune` fails before timing anything when its cache cannot be written, and `qrt bench
# --device` names what is wrong (no CUDA in this binary or no GPU, a bad device string) in one
# line with a non-zero exit. The tune case uses the default model (QRT_DEFAULT_MODEL) when set.
#   bash tests/cli/tune_bench_device_errors.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: tune_bench_device_errors.sh <qrt> <tests/data>}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -n "$MODEL" ] && [ -e "$MODEL" ]; then
  start=$SECONDS
  timeout 60 "$QRT" tune "$MODEL" --cache /proc/qrt-no-such-dir/tuning.json --batch 1 -q >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" -ne 0 ] || bad "tune into an unwritable cache exited 0"
  grep -q 'qrt: error: .*/proc/qrt-no-such-dir/tuning.json' "$tmp/err" || bad "tune: the error does not name the cache: $(cat "$tmp/err")"
  grep -q 'nothing was tuned' "$tmp/err" || bad "tune: the error does not say nothing was tuned: $(cat "$tmp/err")"
  grep -q 'candidates timed' "$tmp/out" && bad "tune: timed candidates before failing on the cache"
else
  echo "note: QRT_DEFAULT_MODEL unset or missing: the tune case is skipped"
fi

timeout 30 "$QRT" bench --shape 256x256 --device cuda:banana >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -ne 0 ] || bad "bench --device cuda:banana exited 0"
[ "$(wc -l <"$tmp/err")" -ge 1 ] && grep -q '^qrt: error:' "$tmp/err" || bad "bench --device cuda:banana: no 'qrt: error:' line: $(cat "$tmp/err")"
[ "$rc" -lt 128 ] || bad "bench --device cuda:banana crashed (exit $rc)"

# --device cuda on a machine without a GPU (or a build without CUDA): a clear error, never a crash.
if ! nvidia-smi -L >/dev/null 2>&1; then
  timeout 30 "$QRT" bench --shape 256x256 --device cuda >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || bad "bench --device cuda without a GPU: exit $rc"
  grep -q '^qrt: error:' "$tmp/err" || bad "bench --device cuda without a GPU: no 'qrt: error:' line: $(cat "$tmp/err")"
fi

# --params: a key no listed backend knows is an error before any timing; one that only cpu_simd takes
# is applied to it while cpu_ref runs on its defaults, with a note.
timeout 30 "$QRT" bench --shape 64x64 --batch 1 --params '{"activatons":"f32"}' >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || bad "bench --params typo: exit $rc, expected 2"
grep -q "no backend of --backends accepts them" "$tmp/err" || bad "bench --params typo: unclear error: $(cat "$tmp/err")"
grep -q "memory read bandwidth" "$tmp/out" && bad "bench --params typo: timed before failing"
timeout 60 "$QRT" bench --shape 64x64 --batch 1 --min-time 0.01 --max-time 0.1 -t 1 --params '{"activations":"f32"}' \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || bad "bench --params for cpu_simd only: exit $rc: $(cat "$tmp/err")"
grep -q "^cpu_ref .*--params do not apply" "$tmp/out" || bad "bench: no note that cpu_ref ignores --params"
grep -Eq '^cpu_simd +1 ' "$tmp/out" || bad "bench: no cpu_simd row"

[ "$fail" -eq 0 ] && echo "PASS: tune/bench device and cache errors"
exit "$fail"
