#!/usr/bin/env bash
# `qrt run` takes its prompt as llama-cli users expect: -p TEXT, -f FILE, "-p -" (standard input),
# and standard input when it is piped and neither -p nor -f is given; all four give the same text
# for the same prompt (greedy). Conflicts and missing files are bad input (exit 2).
#   bash tests/cli/run_prompt_sources.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: run_prompt_sources.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
prompt="The capital of France is"
printf '%s\n' "$prompt" >"$tmp/prompt.txt"   # a trailing newline, as editors write files
run() { timeout 120 "$QRT" run -m "$MODEL" -n 6 -t 2 "$@" 2>"$tmp/err"; }

want="$(run -p "$prompt" </dev/null)" || bad "-p: exit $?: $(tail -n 2 "$tmp/err")"
[ -n "$want" ] || bad "-p: no text"
got="$(run -f "$tmp/prompt.txt" </dev/null)" || bad "-f: exit $?: $(tail -n 2 "$tmp/err")"
[ "$got" = "$want" ] || bad "-f FILE differs from -p: '$got' vs '$want'"
got="$(run -p - <"$tmp/prompt.txt")" || bad "-p -: exit $?: $(tail -n 2 "$tmp/err")"
[ "$got" = "$want" ] || bad "-p - differs from -p: '$got' vs '$want'"
got="$(run <"$tmp/prompt.txt")" || bad "piped: exit $?: $(tail -n 2 "$tmp/err")"
[ "$got" = "$want" ] || bad "a piped prompt differs from -p: '$got' vs '$want'"
got="$(cat "$tmp/prompt.txt" | run --chat)" || bad "piped --chat: exit $?: $(tail -n 2 "$tmp/err")"
echo "[-p] $want | [piped --chat] $got"

expect_bad() {  # expect_bad LABEL TEXT qrt-run-args...
  local label="$1" text="$2"; shift 2
  run "$@" </dev/null >/dev/null; local rc=$?
  [ "$rc" -eq 2 ] || bad "$label: exit $rc, expected 2"
  grep -q "^qrt: error: .*$text" "$tmp/err" || bad "$label: $(head -n 1 "$tmp/err")"
}
expect_bad "missing prompt file" "$tmp/none.txt: cannot open" -f "$tmp/none.txt"
expect_bad "-p and -f" "-p and -f" -p hi -f "$tmp/prompt.txt"
: >"$tmp/empty.txt"
expect_bad "empty prompt file" "empty" -f "$tmp/empty.txt"

[ "$fail" -eq 0 ] && echo "OK: run_prompt_sources"
exit "$fail"
