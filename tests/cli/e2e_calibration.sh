#!/usr/bin/env bash
# End to end: calibrated quantization from the default GGUF.
# Always (CI, seconds of calibration): GPTQ with act-order and AWQ calibrated on a few tokens
# sampled from the model itself; the folders load and score a held-out text with a finite
# perplexity, GPTQ records act-order (desc_act), AWQ changes the RMSNorm weights (its scales are folded there),
# and progress lines reach stderr when it is not a terminal.
# With QRT_CALIB_HELD_OUT=1 (about 15 CPU minutes): the held-out gate of docs/QUALITY.md -- GPTQ
# and AWQ calibrated by default (8,192 sampled tokens) must score a lower perplexity than round to
# nearest on the Doyle story, which no calibration reads (measured: 31.63 vs 32.26, 26.65 vs 28.91). At the sizes CI can afford (2,048 tokens) the
# calibrated model is worse than round to nearest (docs/QUALITY.md), so CI does not run it.
#   bash tests/cli/e2e_calibration.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_calibration.sh <qrt> <tests/data>}"
DATA="${2:?usage: e2e_calibration.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
STORY="$DATA/text/doyle_scandal_in_bohemia.txt"
head -c 3000 "$STORY" >"$tmp/held_out.txt"

quantize() {  # quantize OUT METHOD qrt-args...
  local out="$1" method="$2"; shift 2
  timeout 1800 "$QRT" quantize "$MODEL" "$tmp/$out" --method "$method" --bits 4 --group-size 64 "$@" \
    >"$tmp/q.out" 2>"$tmp/q.err" || { bad "quantize $out: exit $?: $(tail -n 2 "$tmp/q.err")"; return 1; }
}
ppl_of() {  # ppl_of FOLDER TEXT CTX; prints the PPL value
  timeout 600 "$QRT" perplexity -m "$tmp/$1" -f "$2" --ctx "$3" -t 2 >"$tmp/p.out" 2>"$tmp/p.err" ||
    { echo "perplexity $1: exit $?: $(tail -n 1 "$tmp/p.err")" >&2; return 1; }
  grep -ho 'PPL = [0-9.]*' "$tmp/p.out" "$tmp/p.err" | head -n 1 | awk '{print $3}'
}

if [ "${QRT_CALIB_HELD_OUT:-0}" = 1 ]; then
  for method in gptq awq; do
    quantize "$method-rtn" "$method" --calib none && quantize "$method-cal" "$method" || continue
    rtn=$(ppl_of "$method-rtn" "$STORY" 512) && cal=$(ppl_of "$method-cal" "$STORY" 512) || { bad "perplexity"; continue; }
    echo "[$method] held-out PPL (the story, ctx 512): round to nearest $rtn, calibrated (default) $cal"
    awk -v c="$cal" -v r="$rtn" 'BEGIN { exit !(c > 1 && c < r) }' ||
      bad "$method: calibrated PPL $cal is not below round to nearest's $rtn"
  done
  [ "$fail" -eq 0 ] && echo "OK: e2e_calibration (held out)"
  exit "$fail"
fi

quantize gptq gptq --calib-tokens 128 --calib-seed 1 --act-order
# Progress reaches a log: stderr is not a terminal here.
grep -q '^qrt: GPTQ (layers): 30/30 (100%)' "$tmp/q.err" || bad "quantize gptq: no progress lines: $(head -n 3 "$tmp/q.err")"
grep -q 'calibrated on 128 tokens sampled from the model' "$tmp/q.err" || bad "quantize gptq: no calibration line"
grep -q '"desc_act": *true' "$tmp/gptq/config.json" || bad "quantize gptq --act-order: desc_act not true in config.json"
quantize awq awq --calib-tokens 128 --calib-seed 1
grep -q '^qrt: AWQ scale search (layers): 30/30 (100%)' "$tmp/q.err" || bad "quantize awq: no progress lines"
quantize awq-rtn awq --calib none
cmp -s "$tmp/awq/model.safetensors" "$tmp/awq-rtn/model.safetensors" && bad "quantize awq: same tensors as round to nearest"
for m in gptq awq; do
  p=$(ppl_of "$m" "$tmp/held_out.txt" 128) || { bad "perplexity $m"; continue; }
  echo "[$m] 128 calibration tokens, held-out PPL (ctx 128, first 3000 bytes of the story): $p"
  awk -v p="$p" 'BEGIN { exit !(p > 1 && p < 500) }' || bad "perplexity $m: PPL '$p' not in (1, 500)"
done
# --act-order needs calibration; FP8 takes none.
timeout 60 "$QRT" quantize "$MODEL" "$tmp/x" --method gptq --act-order --calib none >"$tmp/out" 2>&1 && bad "--act-order --calib none accepted"
timeout 60 "$QRT" quantize "$MODEL" "$tmp/y" --method fp8 --calib sampled >"$tmp/out" 2>&1 && bad "--method fp8 --calib sampled accepted"
[ -e "$tmp/x" ] || [ -e "$tmp/y" ] && bad "a refused quantize left its output behind"

[ "$fail" -eq 0 ] && echo "OK: e2e_calibration"
exit "$fail"
