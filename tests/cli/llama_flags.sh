#!/usr/bin/env bash
# llama.cpp habits on qrt's command line: `qrt help [CMD]`; an unknown or missing command is named
# with the list of commands; llama.cpp's short flags work where they mean the same (-c, -s, -f,
# -n, -t, -m, --temp, --top-k, --repeat-penalty, -sys); flags with no meaning in qrt (-ngl, -fa,
# ...) get "qrt has no X: use Y"; every command that reads a model takes it as MODEL or -m, and a
# prompt where the model goes is named as such. Every usage error exits 2.
#   bash tests/cli/llama_flags.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: llama_flags.sh <qrt> <tests/data>}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
q() { timeout 120 "$QRT" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"; }

q help || bad "qrt help: exit $?"
grep -q '^  chat ' "$tmp/out" && grep -q '^  run ' "$tmp/out" || bad "qrt help does not list the commands"
q help run || bad "qrt help run: exit $?"
grep -q -- '--ctx-size' "$tmp/out" || bad "qrt help run does not describe run's flags"

usage_error() {  # usage_error LABEL TEXT qrt-args...: exit 2 and TEXT on the first line
  local label="$1" text="$2"; shift 2
  q "$@"; local rc=$?
  [ "$rc" -eq 2 ] || bad "$label: exit $rc, expected 2"
  [[ "$(head -n 1 "$tmp/err")" == "qrt: error: "*"$text"* ]] || bad "$label: $(head -n 1 "$tmp/err")"
}
usage_error "unknown command" "unknown command 'generate'; the commands are: bench, chat," generate -p hi
usage_error "help for an unknown command" "no such command" help generate
usage_error "no command" "no command given; the commands are:"
usage_error "llama-cli without a command" "no command before '-m' (e.g. qrt run -m" -m model.gguf -p hi
usage_error "-ngl" "qrt has no -ngl (layers to offload to the GPU): use --device cuda" \
  run -p hi -ngl 99
usage_error "--n-gpu-layers=99" "qrt has no --n-gpu-layers" run -p hi --n-gpu-layers=99
usage_error "-fa" "qrt has no -fa" run -p hi -fa
usage_error "-ctk" "qrt has no -ctk (the KV cache type): use --kv-cache f16|f32" perplexity -f x -ctk q8_0
usage_error "llama-bench -p" "qrt bench has no -p" bench -m model.gguf -p 512
usage_error "a prompt where MODEL goes" "MODEL: 'Hello there' is not a file or folder here" \
  run "Hello there"
usage_error "run: the hint names -p" "a .gguf file; a prompt goes after -p)" run "Hello there"
usage_error "plan: no -p to hint at" "MODEL is a Hugging Face folder or a .gguf file)" plan "Hello there"
for cmd in run chat serve perplexity plan tune bench; do
  usage_error "$cmd MODEL -m MODEL" "the model is given twice: as MODEL and with -m" \
    "$cmd" "$tmp" -m "$tmp"
done

MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP (the rest): QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit "$fail"
fi
# The model as the first word after the command, as `qrt plan MODEL` always took it.
q run "$MODEL" -p "Hi" -n 1 -t 1 || bad "qrt run MODEL: exit $?: $(head -n 1 "$tmp/err")"
# "-p -ngl" is a prompt, not a flag.
q run -m "$MODEL" -p -ngl -n 1 -t 1 || bad "-p -ngl (a prompt): exit $?: $(head -n 1 "$tmp/err")"
# The llama-cli spelling of a sampled run: every flag accepted and used.
q run -m "$MODEL" -p "Once upon a time" -n 4 -c 512 -s 7 -t 1 --temp 0.7 --top-k 40 --top-p 0.9 --min-p 0.05 \
  --repeat-penalty 1.1 -sys "You are terse." -v || bad "llama-cli flags: exit $?: $(head -n 1 "$tmp/err")"
grep -q '^qrt: sampling: temp 0.7, top-k 40, top-p 0.9, min-p 0.05, seed 7, repeat-penalty 1.1$' "$tmp/err" ||
  bad "llama-cli flags: $(grep '^qrt: sampling' "$tmp/err" | tail -n 1)"
grep -q '^qrt: max_new_tokens 4 (-n), context 512 tokens' "$tmp/err" ||
  bad "-c 512: $(grep '^qrt: max_new_tokens' "$tmp/err")"
grep -q 'on cpu (1 thread)' "$tmp/err" || bad "-t 1: $(grep 'backends:' "$tmp/err")"
# -c is the window of perplexity, as in llama-perplexity.
head -c 1500 "$(dirname "$0")/../data/text/kjv_ruth_jonah.txt" >"$tmp/text.txt"
q perplexity -m "$MODEL" -f "$tmp/text.txt" -c 64 --chunks 1 -t 1 || bad "perplexity -c 64: exit $?"
grep -q 'windows\? of 64 tokens' "$tmp/err" || bad "perplexity -c 64: $(grep window "$tmp/err")"

[ "$fail" -eq 0 ] && echo "OK: llama_flags"
exit "$fail"
