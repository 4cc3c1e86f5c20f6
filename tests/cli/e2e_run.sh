#!/usr/bin/env bash
# End to end: `qrt run` on the default model answers a chat question with text and reports speed.
#   bash tests/cli/e2e_run.sh <path-to-qrt> <tests/data>
# Skips (exit 0, "SKIP: ...") when $QRT_DEFAULT_MODEL is unset or missing.
set -uo pipefail
QRT="${1:?usage: e2e_run.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
check_answer() {  # $1 = label, rest = extra qrt run args
  local label="$1"; shift
  timeout 120 "$QRT" run -m "$MODEL" -p "What is the capital of France?" --chat -n 16 -t 2 "$@" \
    >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne 0 ]; then echo "FAIL [$label]: exit $rc: $(head -n 3 "$tmp/err")"; fail=1; return; fi
  if ! grep -q '[[:alnum:]]' "$tmp/out"; then echo "FAIL [$label]: no text on stdout"; fail=1; fi
  if ! grep -q 'decode: .*tokens/s' "$tmp/err"; then echo "FAIL [$label]: no 'decode: ... tokens/s' line"; fail=1; fi
  if ! grep -q 'backends: ' "$tmp/err"; then echo "FAIL [$label]: no 'backends:' line"; fail=1; fi
  # A coherent answer names Paris (SmolLM2-135M-Instruct does, greedy, with the reference backend).
  if ! grep -qi 'paris' "$tmp/out"; then
    echo "FAIL [$label]: the answer does not mention Paris: $(head -c 200 "$tmp/out")"; fail=1
  fi
  echo "[$label] $(tr '\n' ' ' <"$tmp/out" | head -c 120) | $(grep 'decode:' "$tmp/err")"
}
check_answer "cpu_ref" --backend cpu_ref
check_answer "auto"
[ "$fail" -eq 0 ] && echo "OK: e2e_run"
exit "$fail"
