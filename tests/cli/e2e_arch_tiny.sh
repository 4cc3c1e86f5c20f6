#!/usr/bin/env bash
# Gemma-2 and Phi-3 end to end on the tiny random models of tests/data/fixtures/{gemma2,phi3}_tiny
# and phi3_{longrope,partial}_tiny
# (tools/make_arch_tiny_models.py; their logits are checked against transformers in
# tests/model/test_reference_logits.cpp): `qrt inspect` and `qrt plan` name the architecture,
# `qrt run` generates, `qrt quantize` (GPTQ and AWQ, round to nearest) writes folders that plan and
# run (Phi-3's fused qkv_proj / gate_up_proj quantized as one linear each), and calibrated
# quantization, which does not know these blocks yet, is refused with the way out named. The same
# models as GGUF files ({gemma2,phi3}_tiny_gguf/model.gguf, tools/make_arch_tiny_gguf.py; logits
# checked in the same test file) inspect, run with the tokenizer they carry, and quantize to a
# folder that runs.
#   bash tests/cli/e2e_arch_tiny.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_arch_tiny.sh <qrt> <tests/data>}"
DATA="${2:?usage: e2e_arch_tiny.sh <qrt> <tests/data>}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# The fixtures carry no tokenizer: a byte-level one of the first 64 ids of the tiny GPT-2 test
# tokenizer (printable ASCII bytes) fits their vocabulary of 64.
python3 - "$DATA/tokenizer/tiny_gpt2/tokenizer.json" "$tmp/tokenizer.json" <<'PY' || { echo "FAIL: tokenizer"; exit 1; }
import json, sys
t = json.load(open(sys.argv[1]))
vocab = {k: v for k, v in t["model"]["vocab"].items() if v < 64}
t["model"]["vocab"] = vocab
t["model"]["merges"] = []
t["post_processor"] = None
t["added_tokens"] = [a for a in t.get("added_tokens", []) if a["id"] < 64]
json.dump(t, open(sys.argv[2], "w"))
PY

for m in gemma2 phi3 phi3_longrope phi3_partial; do
  arch=$([ "$m" = gemma2 ] && echo Gemma2ForCausalLM || echo Phi3ForCausalLM)
  cp -r "$DATA/fixtures/${m}_tiny" "$tmp/$m"; rm -f "$tmp/$m/logits.json"; cp "$tmp/tokenizer.json" "$tmp/$m/"
  "$QRT" inspect "$tmp/$m" >"$tmp/i.out" 2>&1 || bad "$m inspect: $(tail -n 3 "$tmp/i.out")"
  grep -q "$arch" "$tmp/i.out" || bad "$m inspect does not name $arch: $(cat "$tmp/i.out")"
  "$QRT" plan -m "$tmp/$m" >"$tmp/p.out" 2>&1 || bad "$m plan: $(tail -n 3 "$tmp/p.out")"
  grep -q "$arch" "$tmp/p.out" || bad "$m plan does not name $arch: $(cat "$tmp/p.out")"
  timeout 60 "$QRT" run -m "$tmp/$m" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
    bad "$m run: $(tail -n 3 "$tmp/r.err")"

  # Calibrated quantization runs the Llama block layer by layer: refused, naming --calib none.
  timeout 60 "$QRT" quantize "$tmp/$m" "$tmp/$m-cal" --method gptq --bits 4 --group-size 32 >"$tmp/c.out" 2>&1
  rc=$?
  [ "$rc" -ne 0 ] && grep -q -- "--calib none" "$tmp/c.out" || bad "$m calibrated quantize (exit $rc): $(tail -n 3 "$tmp/c.out")"

  for method in gptq awq; do
    q="$tmp/$m-$method"
    timeout 120 "$QRT" quantize "$tmp/$m" "$q" --method "$method" --bits 4 --group-size 32 --calib none \
      >"$tmp/q.out" 2>"$tmp/q.err" || { bad "$m quantize $method: $(tail -n 3 "$tmp/q.err")"; continue; }
    "$QRT" plan -m "$q" >"$tmp/p.out" 2>&1 || bad "$m-$method plan: $(tail -n 3 "$tmp/p.out")"
    grep -q "$arch" "$tmp/p.out" || bad "$m-$method plan does not name $arch"
    if [ "$m" != gemma2 ]; then
      grep -q "self_attn.qkv_proj" "$tmp/p.out" && grep -q "mlp.gate_up_proj" "$tmp/p.out" ||
        bad "phi3-$method plan does not list the fused linears: $(cat "$tmp/p.out")"
    fi
    timeout 60 "$QRT" run -m "$q" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
      bad "$m-$method run: $(tail -n 3 "$tmp/r.err")"
  done
done

for m in gemma2 phi3 phi3_longrope phi3_partial; do
  g="$DATA/fixtures/${m}_tiny_gguf/model.gguf"
  "$QRT" inspect "$g" >"$tmp/i.out" 2>&1 || bad "$m gguf inspect: $(tail -n 3 "$tmp/i.out")"
  grep -q "architecture *${m%%_*}" "$tmp/i.out" || bad "$m gguf inspect does not name $m: $(head -n 12 "$tmp/i.out")"
  timeout 60 "$QRT" run -m "$g" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
    bad "$m gguf run: $(tail -n 3 "$tmp/r.err")"
  timeout 120 "$QRT" quantize "$g" "$tmp/$m-gguf-gptq" --method gptq --bits 4 --group-size 32 --calib none \
    >"$tmp/q.out" 2>"$tmp/q.err" || { bad "$m gguf quantize: $(tail -n 3 "$tmp/q.err")"; continue; }
  timeout 60 "$QRT" run -m "$tmp/$m-gguf-gptq" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
    bad "$m gguf-gptq run: $(tail -n 3 "$tmp/r.err")"
done
# The folders written from the Phi-3 files keep the longrope factors and the rotary fraction.
grep -q '"partial_rotary_factor": 0.75' "$tmp/phi3_partial-gguf-gptq/config.json" 2>/dev/null ||
  bad "phi3_partial gguf-gptq config.json lacks partial_rotary_factor 0.75"
grep -q '"longrope"' "$tmp/phi3_longrope-gguf-gptq/config.json" 2>/dev/null ||
  bad "phi3_longrope gguf-gptq config.json lacks longrope: $(cat "$tmp/phi3_longrope-gguf-gptq/config.json" 2>&1 | head -n 40)"
# The folder written from the Gemma-2 file keeps the rules the file implies (its norms are HF's w
# again, checked with the logits in test_model).
grep -q '"query_pre_attn_scalar": 8' "$tmp/gemma2-gguf-gptq/config.json" 2>/dev/null ||
  bad "gemma2 gguf-gptq config.json lacks query_pre_attn_scalar 8: $(cat "$tmp/gemma2-gguf-gptq/config.json" 2>&1 | head -n 40)"

[ "$fail" -eq 0 ] && echo "e2e_arch_tiny: ok"
exit "$fail"
