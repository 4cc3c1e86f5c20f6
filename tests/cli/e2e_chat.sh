#!/usr/bin/env bash
# End to end: `qrt chat` on the default model, driven through standard input. Three turns keep the
# conversation (each turn reuses the cached tokens of the previous ones), /reset forgets it, /exit
# ends it, a small context drops the oldest turns instead of failing, and `qrt run -cnv` is the
# same chat.
#   bash tests/cli/e2e_chat.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_chat.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
chat() {  # chat INPUT qrt-args...: runs qrt chat on INPUT, stdout/stderr in $tmp/out, $tmp/err
  local input="$1"; shift
  printf '%b' "$input" | timeout 180 "$QRT" "$@" >"$tmp/out" 2>"$tmp/err"
}

# Three turns: the second answer names Paris; turns 2 and 3 reuse the cache; the summary counts 3.
chat 'My name is Anna.\nWhat is the capital of France?\nWhat is my name?\n' chat -m "$MODEL" -n 24 -t 2 -v
rc=$?
[ "$rc" -eq 0 ] || bad "three turns: exit $rc: $(tail -n 3 "$tmp/err")"
grep -q 'chat: 3 turns' "$tmp/err" || bad "three turns: no 'chat: 3 turns' summary: $(grep 'chat:' "$tmp/err")"
grep -qi 'paris' "$tmp/out" || bad "three turns: no answer names Paris: $(head -c 300 "$tmp/out")"
reused2=$(sed -n 's/.*turn 2: prompt .* (\([0-9]*\) reused.*/\1/p' "$tmp/err")
reused3=$(sed -n 's/.*turn 3: prompt .* (\([0-9]*\) reused.*/\1/p' "$tmp/err")
{ [ "${reused2:-0}" -gt 20 ] && [ "${reused3:-0}" -gt "${reused2:-0}" ]; } ||
  bad "three turns: the history is not kept in the cache (reused: turn 2 '$reused2', turn 3 '$reused3')"
echo "[three turns] $(tr '\n' '|' <"$tmp/out" | head -c 200)"

# /reset: the next turn starts from an empty conversation; /exit: nothing after it is answered.
chat 'Hello!\n/reset\nWhat is the capital of France?\n/exit\nAnd of Spain?\n' chat -m "$MODEL" -n 16 -t 2 -v
rc=$?
[ "$rc" -eq 0 ] || bad "/reset and /exit: exit $rc: $(tail -n 3 "$tmp/err")"
grep -q 'conversation reset' "$tmp/err" || bad "/reset: not acknowledged"
grep -q 'turn 2: prompt .* (0 reused' "$tmp/err" || bad "/reset: turn 2 reused tokens of the forgotten turn: $(grep 'turn 2' "$tmp/err")"
grep -q 'chat: 2 turns' "$tmp/err" || bad "/exit: the line after it was answered: $(grep 'chat:' "$tmp/err")"

# A context of 160 tokens holds about two turns: the oldest are dropped, the chat goes on.
chat 'Tell me about the sea.\nTell me about the mountains.\nTell me about the forest.\nTell me about the sky.\n' \
  chat -m "$MODEL" -n 24 -c 160 -t 2
rc=$?
[ "$rc" -eq 0 ] || bad "small context: exit $rc: $(tail -n 3 "$tmp/err")"
grep -q 'the context is full: dropped the' "$tmp/err" || bad "small context: no turn was dropped"
grep -q 'chat: 4 turns' "$tmp/err" || bad "small context: not every message was answered: $(grep 'chat:' "$tmp/err")"

# llama-cli's -cnv on qrt run is the same chat; end of input ends it.
chat 'What is the capital of France?\n' run -m "$MODEL" -cnv -n 16 -t 2
rc=$?
[ "$rc" -eq 0 ] || bad "run -cnv: exit $rc: $(tail -n 3 "$tmp/err")"
grep -qi 'paris' "$tmp/out" || bad "run -cnv: no answer names Paris: $(head -c 200 "$tmp/out")"
grep -q 'chat: 1 turn,' "$tmp/err" || bad "run -cnv: $(grep 'chat:' "$tmp/err")"

[ "$fail" -eq 0 ] && echo "OK: e2e_chat"
exit "$fail"
