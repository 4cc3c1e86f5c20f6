#!/usr/bin/env bash
# End to end: GGUF -> qrt dequantize (f16 folder) -> qrt quantize (GPTQ 4-bit g64 and AWQ 4-bit g64)
# -> qrt run / plan / perplexity on the results.
#   bash tests/cli/e2e_quantize.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_quantize.sh <qrt> <tests/data>}"
DATA="${2:?usage: e2e_quantize.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
step() {  # $1 = label; rest = qrt args; stdout/stderr in $tmp/out, $tmp/err
  local label="$1"; shift
  timeout 120 "$QRT" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ "$rc" -eq 0 ] || { bad "$label: exit $rc: $(tail -n 2 "$tmp/err")"; return 1; }
}
head -c 1500 "$DATA/text/kjv_ruth_jonah.txt" >"$tmp/slice.txt"

step dequantize dequantize "$MODEL" "$tmp/f16" --dtype f16 || exit 1
for f in config.json model.safetensors tokenizer.json; do
  [ -s "$tmp/f16/$f" ] || bad "dequantize: $f missing from the output folder"
done
grep -q quantization_config "$tmp/f16/config.json" && bad "dequantize: config.json still has quantization_config"

for method in gptq awq; do
  out="$tmp/$method"
  step "quantize $method" quantize "$tmp/f16" "$out" --method "$method" --bits 4 --group-size 64 --calib none || continue
  grep -q '"quant_method": *"'"$method"'"' "$out/config.json" || bad "quantize $method: quant_method missing in config.json"
  grep -q '"group_size": *64' "$out/config.json" || bad "quantize $method: group_size 64 missing in config.json"
  [ -s "$out/tokenizer.json" ] || bad "quantize $method: tokenizer.json not copied"
  if step "run $method" run -m "$out" -p "What is the capital of France?" --chat -n 8 -t 2; then
    grep -q '[[:alnum:]]' "$tmp/out" || bad "run $method: no text"
    grep -q 'tokens/s' "$tmp/err" || bad "run $method: no tokens/s"
    echo "[$method] $(tr '\n' ' ' <"$tmp/out")"
  fi
  if step "plan $method" plan "$out" --no-tuning-cache; then
    grep -q "4-bit g64" "$tmp/out" || bad "plan $method: layers are not shown as 4-bit g64"
  fi
  if step "perplexity $method" perplexity -m "$out" -f "$tmp/slice.txt" --ctx 64 --chunks 2 -t 2; then
    ppl=$(grep -o 'PPL = [0-9.]*' "$tmp/out" "$tmp/err" | head -n 1 | awk '{print $3}')
    echo "[$method] ctx 64, 2 windows: PPL $ppl"
    awk -v p="$ppl" 'BEGIN { exit !(p > 1 && p < 200) }' || bad "perplexity $method: PPL '$ppl' not in (1, 200)"
  fi
done

# Writing over an existing folder is refused without --force, and the folder is left as it was.
timeout 60 "$QRT" quantize "$tmp/f16" "$tmp/gptq" --method gptq --bits 4 --group-size 64 >"$tmp/out" 2>"$tmp/err"
rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "quantize into an existing folder: exit $rc, expected 1..127"
[ -s "$tmp/gptq/model.safetensors" ] || bad "quantize into an existing folder damaged it"

[ "$fail" -eq 0 ] && echo "OK: e2e_quantize"
exit "$fail"
