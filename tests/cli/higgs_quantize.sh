#!/usr/bin/env bash
# `qrt quantize --method higgs` end to end on a tiny random Llama (tests/cli/tiny_llama_folder.py:
# hidden 64, intermediate 128): the folder's config.json is a HiggsConfig with one FLUTE
# tune_metadata entry per HIGGS layer and the layers FLUTE cannot pack (out_features not a multiple
# of 128 at 4 bits) in modules_to_not_convert; `qrt plan` and `qrt run` load it with those layers
# as rotated codebooks on cpu_higgs; `qrt dequantize` gives weights near the originals; settings HIGGS cannot
# write are refused before anything is written.
#   bash tests/cli/higgs_quantize.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: higgs_quantize.sh <qrt> <tests/data>}"
HERE="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

python3 "$HERE/tiny_llama_folder.py" "$tmp/f16" 3 || { echo "FAIL: could not write the tiny model"; exit 1; }
timeout 120 "$QRT" quantize "$tmp/f16" "$tmp/h4" --method higgs >"$tmp/q.out" 2>"$tmp/q.err"; rc=$?
[ "$rc" -eq 0 ] || bad "quantize: exit $rc: $(tail -n 3 "$tmp/q.err")"
grep -q "hadamard-size 64" "$tmp/q.err" || bad "quantize: the chosen hadamard size is not said: $(cat "$tmp/q.err")"
grep -q "10 linear layers stay f16" "$tmp/q.err" || bad "quantize: the dense layers are not said: $(cat "$tmp/q.err")"
grep -q "4 linear layers as higgs 4-bit p2 g64 hadamard 64" "$tmp/q.out" || bad "quantize: $(cat "$tmp/q.out")"

python3 - "$tmp/h4" <<'PY' || bad "config.json / tensors (above)"
import json, struct, sys
d = sys.argv[1]
q = json.load(open(d + "/config.json"))["quantization_config"]
assert q["quant_method"] == "higgs" and q["bits"] == 4 and q["p"] == 2, q
assert q["hadamard_size"] == 64 and q["group_size"] == 64, q
higgs = ["model.layers.%d.mlp.%s" % (i, m) for i in range(2) for m in ("gate_proj", "up_proj")]
assert sorted(q["tune_metadata"]) == sorted(higgs), q["tune_metadata"].keys()
meta = q["tune_metadata"]["model.layers.1.mlp.up_proj"]
assert meta == {"M": 1, "N": 128, "K": 64, "num_bits": 4, "group_size": 64, "num_sms": 132,
                "dtype": "torch.float16", "device": "cuda:0", "template_id": 16}, meta
assert "lm_head" in q["modules_to_not_convert"] and "model.layers.0.self_attn.q_proj" in q["modules_to_not_convert"]
assert len(q["modules_to_not_convert"]) == 11, q["modules_to_not_convert"]
b = open(d + "/model.safetensors", "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
p = "model.layers.0.mlp.gate_proj."
assert h[p + "weight"]["dtype"] == "I16" and h[p + "weight"]["shape"] == [32, 64], h[p + "weight"]
assert h[p + "scales"]["shape"] == [128, 1] and h[p + "tables2"]["shape"] == [16, 16, 2], h[p + "scales"]
assert h["model.layers.0.self_attn.q_proj.weight"]["dtype"] == "F16"
PY

timeout 60 "$QRT" plan "$tmp/h4" --device cpu >"$tmp/plan" 2>&1 || bad "plan: $(tail -n 3 "$tmp/plan")"
grep -q "mlp.gate_proj .*4-bit per-row codebook p2 hadamard 64" "$tmp/plan" || bad "plan: no HIGGS gate_proj row: $(head -n 12 "$tmp/plan")"
timeout 60 "$QRT" run -m "$tmp/h4" -p "Hello" -n 4 -t 2 >"$tmp/run.out" 2>"$tmp/run.err" || bad "run: $(tail -n 3 "$tmp/run.err")"
grep -q "backends: cpu_higgs x 4" "$tmp/run.err" || bad "run: the HIGGS layers did not run: $(grep backends "$tmp/run.err")"

# Dequantized weights near the originals: the relative error of a 4-bit p2 grid is about 0.09.
timeout 60 "$QRT" dequantize "$tmp/h4" "$tmp/back" --dtype f32 >"$tmp/deq" 2>&1 || bad "dequantize: $(tail -n 2 "$tmp/deq")"
python3 - "$tmp/f16/model.safetensors" "$tmp/back/model.safetensors" <<'PY' || bad "dequantized weights (above)"
import array, json, math, struct, sys
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    def get(name):
        t = h[name]; s, e = t["data_offsets"]; raw = b[8 + n + s:8 + n + e]
        if t["dtype"] == "F32": return array.array("f", raw).tolist()
        return [struct.unpack("<e", raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    return get
a, b = load(sys.argv[1]), load(sys.argv[2])
for name in ("model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"):
    x, y = a(name), b(name)
    err = math.sqrt(sum((u - v) ** 2 for u, v in zip(x, y)) / sum(u * u for u in x))
    assert 0.05 < err < 0.12, (name, err)
    print("ok [dequantize] %s: relative error %.4f" % (name, err))
x, y = a("model.layers.0.self_attn.q_proj.weight"), b("model.layers.0.self_attn.q_proj.weight")
assert max(abs(u - v) for u, v in zip(x, y)) == 0, "a dense layer changed"
PY

# expect_exit LABEL CODE TEXT ARGS...: refused, nothing written.
expect_exit() {
  local label="$1" code="$2" text="$3"; shift 3
  timeout 60 "$QRT" quantize "$tmp/f16" "$tmp/refused" "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$label: exit $rc, expected $code: $(head -n 2 "$tmp/err")"
  elif ! grep -qF -- "$text" "$tmp/err"; then bad "$label: error does not mention '$text': $(cat "$tmp/err")"
  elif [ -e "$tmp/refused" ]; then bad "$label: the output folder was written"
  else echo "ok [$label] $(head -n 1 "$tmp/err")"
  fi
}
expect_exit "2-bit" 2 "no linear layer has out_features a multiple of 256" --method higgs --bits 2
expect_exit "3-bit" 1 "FLUTE's bit-plane packing" --method higgs --bits 3
expect_exit "p" 2 "--p 3: HIGGS supports 1 or 2" --method higgs --p 3
expect_exit "hadamard" 2 "--hadamard-size 128 does not divide in_features 64" --method higgs --hadamard-size 128
expect_exit "group" 2 "HIGGS groups are 64, 128 or 256" --method higgs --group-size 32
expect_exit "calib" 2 "HIGGS is data-free" --method higgs --calib sampled
expect_exit "p without higgs" 2 "--p applies to --method higgs only" --method gptq --p 2

[ "$fail" -eq 0 ] && echo "ok [higgs quantize] folder, plan, run, dequantize, refusals"
exit "$fail"
