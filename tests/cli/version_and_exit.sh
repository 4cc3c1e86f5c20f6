#!/usr/bin/env bash
# What a run ends with, as llama.cpp users expect: `qrt --version` from the build (the CMake
# project version, the git commit, CUDA or not); perplexity's last line in llama-perplexity's
# "Final estimate: PPL = X +/- Y" form; counts in English ("1 token"); Ctrl-C during `qrt run`
# prints the statistics so far and exits 130; a missing file is bad input (exit 2) everywhere.
#   bash tests/cli/version_and_exit.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: version_and_exit.sh <qrt> <tests/data>}"
DATA="${2:?usage: version_and_exit.sh <qrt> <tests/data>}"
SRC="$(cd "$DATA/../.." && pwd)"
tmp="$(mktemp -d)"; pid=""
trap '[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

version="$("$QRT" --version)" || bad "--version: exit $?"
project="$(sed -n 's/^project(qrt VERSION \([0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt")"
[[ "$version" =~ ^qrt\ ([0-9.]+)\ \(git\ ([0-9a-f]{12}|unknown),\ (CPU\ only|CUDA[^\)]*)\)$ ]] ||
  bad "--version: '$version'"
[ "${BASH_REMATCH[1]:-}" = "$project" ] || bad "--version says ${BASH_REMATCH[1]:-?}, CMakeLists.txt $project"
if head="$(git -C "$SRC" rev-parse HEAD 2>/dev/null)"; then
  [[ "$head" == "${BASH_REMATCH[2]:-x}"* ]] || bad "--version names commit ${BASH_REMATCH[2]:-?}, the checkout is at $head"
fi
echo "[version] $version"

expect_exit2() {  # expect_exit2 LABEL qrt-args...
  local label="$1"; shift
  timeout 60 "$QRT" "$@" </dev/null >/dev/null 2>"$tmp/err"; local rc=$?
  [ "$rc" -eq 2 ] || bad "$label: exit $rc, expected 2: $(head -n 1 "$tmp/err")"
  grep -q '^qrt: error: .*/nonexistent' "$tmp/err" || bad "$label: $(head -n 1 "$tmp/err")"
}
expect_exit2 "run, missing model" run -m /nonexistent/model.gguf -p hi
expect_exit2 "inspect, missing path" inspect /nonexistent/model.gguf
expect_exit2 "plan, missing model" plan /nonexistent/model.gguf
expect_exit2 "quantize, missing input" quantize /nonexistent/in "$tmp/out" --method gptq
expect_exit2 "dequantize, missing input" dequantize /nonexistent/in "$tmp/out"

MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP (the rest): QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit "$fail"
fi
expect_exit2 "perplexity, missing text" perplexity -m "$MODEL" -f /nonexistent/text.txt
expect_exit2 "run, missing config file" run -m "$MODEL" -p hi --config /nonexistent/run.json
expect_exit2 "run, missing prompt file" run -m "$MODEL" -f /nonexistent/prompt.txt

head -c 1500 "$DATA/text/kjv_ruth_jonah.txt" >"$tmp/text.txt"
timeout 120 "$QRT" perplexity -m "$MODEL" -f "$tmp/text.txt" -c 64 --chunks 1 -t 2 >"$tmp/out" 2>"$tmp/err" ||
  bad "perplexity: exit $?: $(tail -n 2 "$tmp/err")"
last="$(tail -n 1 "$tmp/out")"
[[ "$last" =~ ^Final\ estimate:\ PPL\ =\ [0-9]+\.[0-9]{4}\ \+/-\ [0-9]+\.[0-9]{5}$ ]] || bad "perplexity's last line: '$last'"
grep -q ', 1 window of 64 tokens' "$tmp/err" || bad "perplexity: $(grep 'window' "$tmp/err")"
echo "[perplexity] $last"

timeout 120 "$QRT" run -m "$MODEL" -p "Hello" -n 2 --ignore-eos -t 2 >/dev/null 2>"$tmp/err" || bad "run -n 2: exit $?"
grep -q '^qrt: decode: 1 token in' "$tmp/err" || bad "run -n 2: $(grep 'decode:' "$tmp/err")"

# Ctrl-C once the text streams: the statistics of what ran, "stopped: interrupted", exit 130.
# The output goes to a new file: one left by an earlier step looks like streamed text before the
# child has truncated it, and the signal then reaches a process still loading (a background job
# of a script starts with SIGINT ignored), which generates its 100,000 tokens.
story="$tmp/story.out"
# timeout passes the SIGINT on, and ends a run whose signal was lost (exit 137) instead of letting
# it generate for an hour. --foreground: without it timeout sends the signal twice (to the child,
# then to its process group), and a second Ctrl-C ends qrt before it prints its statistics whenever
# the first one has been handled in between.
timeout --foreground -s KILL 180 "$QRT" run -m "$MODEL" -p "Tell me a very long story." -n 100000 -c 100100 --ignore-eos -t 2 \
  >"$story" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 1200); do [ -s "$story" ] && break; sleep 0.1; done
sleep 0.3
kill -INT "$pid"
wait "$pid"; rc=$?; pid=""
[ "$rc" -eq 130 ] || bad "Ctrl-C: exit $rc, expected 130: $(tail -n 2 "$tmp/err")"
grep -q '^qrt: decode: .* stopped: interrupted' "$tmp/err" || bad "Ctrl-C: no statistics: $(tail -n 3 "$tmp/err")"
echo "[Ctrl-C] $(grep '^qrt: decode' "$tmp/err")"

[ "$fail" -eq 0 ] && echo "OK: version_and_exit"
exit "$fail"
