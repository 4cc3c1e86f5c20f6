#!/usr/bin/env bash
# A device that is not here is named with a hint in flags the command has (plan: --target; run,
# perplexity, bench: --device cpu), and a CPU run says nothing about CUDA unless asked (-v) -- no
# "driver version is insufficient" on a machine without a GPU driver.
#   bash tests/cli/device_hints.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: device_hints.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
q() { timeout 120 "$QRT" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"; }

# A CPU run with the default device: no word about CUDA (the backends line says cpu).
q run -m "$MODEL" -p hi -n 2 -t 1 || bad "run: exit $?: $(tail -n 2 "$tmp/err")"
if grep -q 'on cuda' "$tmp/err"; then
  echo "note: a GPU ran the default run; the no-GPU cases are skipped"
  [ "$fail" -eq 0 ] && echo "OK: device_hints"; exit "$fail"
fi
grep -qi 'cuda\|driver' "$tmp/err" && bad "a CPU run mentions CUDA: $(grep -i 'cuda\|driver' "$tmp/err")"
grep -q 'insufficient' "$tmp/err" && bad "a CPU run shows the CUDA runtime's driver text"
# ... and -v says how auto chose, without the runtime's misleading text.
q run -m "$MODEL" -p hi -n 2 -t 1 -v || bad "run -v: exit $?"
grep -q '^qrt: device: cpu (auto: ' "$tmp/err" || bad "run -v: no device line"
grep -q 'insufficient' "$tmp/err" && bad "run -v shows the CUDA runtime's driver text: $(grep insufficient "$tmp/err")"

hint() {  # hint LABEL WANTED UNWANTED qrt-args...
  local label="$1" want="$2" unwanted="$3"; shift 3
  q "$@"; local rc=$?
  { [ "$rc" -ge 1 ] && [ "$rc" -lt 124 ]; } || bad "$label: exit $rc"
  local line; line="$(head -n 1 "$tmp/err")"
  [[ "$line" == "qrt: error: device 'cuda'"*"$want"* ]] || bad "$label: $line"
  [[ "$line" == *"$unwanted"* ]] && bad "$label names a flag it does not have ($unwanted): $line"
  echo "[$label] $line"
}
hint "run --device cuda" "--device cpu" "--target" run -m "$MODEL" -p hi -n 2 --device cuda
hint "perplexity --device cuda" "--device cpu" "--target" perplexity -m "$MODEL" -f "$MODEL" --device cuda
hint "bench --device cuda" "--device cpu" "--target" bench --shape 64x64 --device cuda
hint "plan --device cuda" "--target PROFILE" "does-not-apply" plan "$MODEL" --device cuda

[ "$fail" -eq 0 ] && echo "OK: device_hints"
exit "$fail"
