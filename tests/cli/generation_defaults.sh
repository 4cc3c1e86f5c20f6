#!/usr/bin/env bash
# Generation settings the way transformers and llama.cpp users expect them:
#  - max_new_tokens: -n > the config file's max_new_tokens > generation_config.json's > 128, one
#    case per level, each generating exactly that many tokens (--ignore-eos);
#  - --top-k / --top-p without --temp sample (with a note saying so); --temp 0 is greedy;
#  - the seed is random unless --seed is given, and the printed seed repeats a run.
#   bash tests/cli/generation_defaults.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: generation_defaults.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
timeout 120 "$QRT" dequantize "$MODEL" "$tmp/hf" --dtype f16 >/dev/null 2>"$tmp/err" ||
  { echo "FAIL: dequantize: $(tail -n 2 "$tmp/err")"; exit 1; }
echo '{"max_new_tokens": 5}' >"$tmp/hf/generation_config.json"
echo '{"max_new_tokens": 3}' >"$tmp/run.json"

generated() {  # generated LABEL EXPECTED_COUNT EXPECTED_SOURCE qrt-run-args...
  local label="$1" want="$2" source="$3"; shift 3
  timeout 120 "$QRT" run -p "Once upon a time" --ignore-eos -t 2 -v "$@" >/dev/null 2>"$tmp/err" ||
    { bad "$label: exit $?: $(tail -n 2 "$tmp/err")"; return; }
  local n; n="$(sed -n 's/^qrt: decode: .*, \([0-9]*\) generated.*/\1/p' "$tmp/err")"
  [ "$n" = "$want" ] || bad "$label: $n tokens generated, expected $want"
  grep -q "^qrt: max_new_tokens $want ($source" "$tmp/err" ||
    bad "$label: the source is not '$source': $(grep '^qrt: max_new_tokens' "$tmp/err")"
  echo "[$label] $n generated ($source)"
}
generated "cli over all" 2 "-n" -m "$tmp/hf" --config "$tmp/run.json" -n 2
generated "config file over generation_config.json" 3 "config file" -m "$tmp/hf" --config "$tmp/run.json"
generated "generation_config.json over the default" 5 "generation_config.json" -m "$tmp/hf"
generated "the default" 128 "default" -m "$MODEL"

sample() {  # sample OUT qrt-run-args...: the text of a short run, stderr in $tmp/err
  local out="$1"; shift
  timeout 120 "$QRT" run -m "$MODEL" -p "Once upon a time" -n 12 -t 2 "$@" >"$out" 2>"$tmp/err"
}
# --top-k without --temp samples (at temperature 1), says so, and prints a random seed.
sample "$tmp/a" --top-k 40 || bad "--top-k: exit $?"
grep -q '^qrt: note: --top-k turns sampling on' "$tmp/err" || bad "--top-k: no note that sampling is on"
grep -q '^qrt: sampling: temp 1, top-k 40, seed [0-9]* (random: --seed' "$tmp/err" ||
  bad "--top-k: $(grep '^qrt: sampling' "$tmp/err")"
seed="$(sed -n 's/^qrt: sampling: .*, seed \([0-9]*\) (random.*/\1/p' "$tmp/err")"
sample "$tmp/b" --top-k 40 || bad "--top-k again: exit $?"
seed2="$(sed -n 's/^qrt: sampling: .*, seed \([0-9]*\) (random.*/\1/p' "$tmp/err")"
[ -n "$seed" ] && [ "$seed" != "$seed2" ] || bad "two runs without --seed got the same seed ($seed, $seed2)"
sample "$tmp/c" --top-k 40 --seed "$seed" || bad "--seed: exit $?"
cmp -s "$tmp/a" "$tmp/c" || bad "--seed $seed did not repeat the first run: '$(cat "$tmp/a")' vs '$(cat "$tmp/c")'"
grep -q "seed $seed\$" "$tmp/err" || bad "--seed: $(grep '^qrt: sampling' "$tmp/err")"
# --top-p alone samples too; --temp 0 is greedy and says the filters are unused.
sample "$tmp/d" --top-p 0.9 && grep -q '^qrt: sampling: temp 1, top-k 50, top-p 0.9' "$tmp/err" ||
  bad "--top-p: $(grep '^qrt: sampling' "$tmp/err")"
sample "$tmp/e" --temp 0 --top-k 40 && grep -q '^qrt: sampling: greedy$' "$tmp/err" &&
  grep -q '^qrt: note: --temp 0 is greedy' "$tmp/err" || bad "--temp 0 --top-k: $(grep '^qrt: ' "$tmp/err" | head -n 3)"

[ "$fail" -eq 0 ] && echo "OK: generation_defaults"
exit "$fail"
