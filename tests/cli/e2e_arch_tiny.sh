#!/usr/bin/env bash
# Gemma-2 and Phi-3 end to end on the tiny random models of tests/data/fixtures/{gemma2,phi3}_tiny
# and phi3_{longrope,partial}_tiny
# (tools/make_arch_tiny_models.py; their logits are checked against transformers in
# tests/model/test_reference_logits.cpp): `qrt inspect` and `qrt plan` name the architecture,
# `qrt run` generates, `qrt quantize` (GPTQ and AWQ, round to nearest and calibrated on text sampled
# from the model) writes folders that plan and run (Phi-3's fused qkv_proj / gate_up_proj quantized
# as one linear each; AWQ's scales folded into the norms in front of q/k/v and gate/up only). The same
# models as GGUF files ({gemma2,phi3}_tiny_gguf/model.gguf, tools/make_arch_tiny_gguf.py; logits
# checked in the same test file) inspect, run with the tokenizer they carry, and quantize to
# folders that run.
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

  # GPTQ and AWQ, round to nearest and calibrated on 256 tokens sampled from the model.
  for method in gptq awq; do
    for calib in none sampled; do
      q="$tmp/$m-$method-$calib"
      timeout 120 "$QRT" quantize "$tmp/$m" "$q" --method "$method" --bits 4 --group-size 32 --calib "$calib" \
        --calib-tokens 256 >"$tmp/q.out" 2>"$tmp/q.err" || { bad "$m quantize $method $calib: $(tail -n 3 "$tmp/q.err")"; continue; }
      [ "$calib" = none ] || grep -q "calibrated on 256 tokens sampled from the model" "$tmp/q.err" ||
        bad "$m quantize $method: no calibration line: $(tail -n 3 "$tmp/q.err")"
      "$QRT" plan -m "$q" >"$tmp/p.out" 2>&1 || bad "$m-$method-$calib plan: $(tail -n 3 "$tmp/p.out")"
      grep -q "$arch" "$tmp/p.out" || bad "$m-$method-$calib plan does not name $arch"
      if [ "$m" != gemma2 ]; then
        grep -q "self_attn.qkv_proj" "$tmp/p.out" && grep -q "mlp.gate_up_proj" "$tmp/p.out" ||
          bad "$m-$method-$calib plan does not list the fused linears: $(cat "$tmp/p.out")"
      fi
      timeout 60 "$QRT" run -m "$q" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
        bad "$m-$method-$calib run: $(tail -n 3 "$tmp/r.err")"
    done
    # Calibration changes the stored tensors (AWQ: the folded norms too).
    cmp -s "$tmp/$m-$method-none/model.safetensors" "$tmp/$m-$method-sampled/model.safetensors" &&
      bad "$m quantize $method: calibrated tensors are round to nearest's"
  done
  # AWQ folds its scales into the norms in front of q/k/v and gate/up, which Gemma-2 stores as w
  # (factor 1 + w): the calibrated folder's norms differ from the original, its output norms not.
  python3 - "$tmp/$m/model.safetensors" "$tmp/$m-awq-sampled/model.safetensors" "$m" <<'PY' || bad "$m awq norms"
import json, struct, sys
def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    fmt = {"F32": "f", "F16": "e"}
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] not in fmt:
            continue
        raw = data[v["data_offsets"][0]:v["data_offsets"][1]]
        out[k] = struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt[v["dtype"]]), fmt[v["dtype"]]), raw)
    return out
src, cal = tensors(sys.argv[1]), tensors(sys.argv[2])
gemma = sys.argv[3] == "gemma2"
near = lambda x, y: all(abs(a - b) <= 1e-3 * max(1.0, abs(a)) for a, b in zip(x, y))
for layer in range(2):
    p = "model.layers.%d." % layer
    folded = ["input_layernorm", "pre_feedforward_layernorm" if gemma else "post_attention_layernorm"]
    for name in folded:
        assert not near(src[p + name + ".weight"], cal[p + name + ".weight"]), "not folded: " + p + name
    for name in ["post_attention_layernorm", "post_feedforward_layernorm"] if gemma else []:
        assert near(src[p + name + ".weight"], cal[p + name + ".weight"]), "changed: " + p + name
PY
done

for m in gemma2 phi3 phi3_longrope phi3_partial; do
  g="$DATA/fixtures/${m}_tiny_gguf/model.gguf"
  "$QRT" inspect "$g" >"$tmp/i.out" 2>&1 || bad "$m gguf inspect: $(tail -n 3 "$tmp/i.out")"
  grep -q "architecture *${m%%_*}" "$tmp/i.out" || bad "$m gguf inspect does not name $m: $(head -n 12 "$tmp/i.out")"
  timeout 60 "$QRT" run -m "$g" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" 2>"$tmp/r.err" ||
    bad "$m gguf run: $(tail -n 3 "$tmp/r.err")"
  # GPTQ round to nearest, AWQ calibrated (the file's norms are read back as HF's w, then folded).
  for method in gptq awq; do
    calib=$([ "$method" = gptq ] && echo none || echo sampled)
    timeout 120 "$QRT" quantize "$g" "$tmp/$m-gguf-$method" --method "$method" --bits 4 --group-size 32 \
      --calib "$calib" --calib-tokens 256 >"$tmp/q.out" 2>"$tmp/q.err" ||
      { bad "$m gguf quantize $method: $(tail -n 3 "$tmp/q.err")"; continue; }
    timeout 60 "$QRT" run -m "$tmp/$m-gguf-$method" -p 'ABCDEFGHIJ' -n 8 --ignore-eos --temp 0 >"$tmp/r.out" \
      2>"$tmp/r.err" || bad "$m gguf-$method run: $(tail -n 3 "$tmp/r.err")"
  done
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
