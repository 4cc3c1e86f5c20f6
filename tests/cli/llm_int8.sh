#!/usr/bin/env bash
# bitsandbytes LLM.int8 end to end on a tiny random Llama (tests/cli/tiny_llama_folder.py) whose
# linears are stored as transformers saves a load_in_8bit model (I8 `weight`, F32 `SCB`, U8
# `weight_format`; lm_head stays f16, as llm_int8_skip_modules' default keeps it):
#   1. `qrt plan --target h100`: every quantized layer on cuda_int8 for all M, the threshold in the
#      row's note, the warning naming where it is applied, llm_int8_threshold in --json;
#   2. --disable cuda_int8: the weight-only plan (cuda_gemv first); --target t4: cuda_dequant;
#   3. threshold 0: the plan says there is no decomposition;
#   4. `qrt run` on the CPU (weight-only) generates; `qrt bench --backend cuda_int8` is accepted.
#   bash tests/cli/llm_int8.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: llm_int8.sh <qrt> <tests/data>}"
HERE="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export QRT_DISABLE_BACKENDS=
fail=0
bad() { echo "FAIL: $*"; fail=1; }

python3 "$HERE/tiny_llama_folder.py" "$tmp/f16" 7 || { echo "FAIL: could not write the tiny model"; exit 1; }
# to_llm_int8 IN OUT THRESHOLD: CB = round(W * 127 / absmax_row), SCB = absmax_row (bitsandbytes' rule).
to_llm_int8() {
  python3 - "$1" "$2" "$3" <<'EOF' || bad "could not write the LLM.int8 folder"
import json, os, shutil, struct, sys
src, dst, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
linears = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
out, blobs, offset = {}, [], 0
def add(name, dtype, shape, blob):
    global offset
    out[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
for name, info in header.items():
    if name == "__metadata__":
        continue
    a, b = info["data_offsets"]
    blob = data[a:b]
    module = name[: -len(".weight")]
    if name.endswith(".weight") and module.split(".")[-1] in linears:
        rows, cols = info["shape"]
        w = struct.unpack(f"<{rows * cols}e", blob)
        cb, scb = bytearray(), []
        for r in range(rows):
            row = w[r * cols:(r + 1) * cols]
            amax = max(abs(v) for v in row) or 1.0
            scb.append(amax)
            cb += struct.pack(f"<{cols}b", *[max(-127, min(127, round(v * 127.0 / amax))) for v in row])
        add(name, "I8", [rows, cols], bytes(cb))
        add(module + ".SCB", "F32", [rows], struct.pack(f"<{rows}f", *scb))
        add(module + ".weight_format", "U8", [], b"\x00")
    else:
        add(name, info["dtype"], info["shape"], blob)
head = json.dumps(out).encode()
head += b" " * (-len(head) % 8)
os.makedirs(dst, exist_ok=True)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))
config = json.load(open(os.path.join(src, "config.json")))
config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True, "load_in_4bit": False,
                                 "llm_int8_threshold": threshold, "llm_int8_skip_modules": None,
                                 "llm_int8_has_fp16_weight": False, "llm_int8_enable_fp32_cpu_offload": False}
json.dump(config, open(os.path.join(dst, "config.json"), "w"), indent=1)
shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(dst, "tokenizer.json"))
EOF
}
to_llm_int8 "$tmp/f16" "$tmp/int8" 6.0
to_llm_int8 "$tmp/f16" "$tmp/int8_t0" 0
plan() { timeout 60 "$QRT" plan "$@" --no-tuning-cache 2>&1; }

# 1. H100: cuda_int8 everywhere, with the threshold.
plan "$tmp/int8" --target h100 >"$tmp/p1" || bad "plan --target h100 exited non-zero: $(head -n 3 "$tmp/p1")"
grep -q "^  cuda_int8 *14 layers (all M)" "$tmp/p1" ||
  bad "h100: not every layer on cuda_int8: $(sed -n '/^summary:/,$p' "$tmp/p1")"
note="note: cuda_int8: LLM.int8: above gemv_max_m rows int8 tensor cores, with the activation columns holding some"
grep -qF "$note |x| >= 6 (llm_int8_threshold)" "$tmp/p1" || bad "h100: no note with the threshold"
# A CPU-only binary plans the CUDA backends from their declarations, without their parameters.
if "$QRT" --version | grep -q CUDA; then
  grep -q '{"gemv_max_m":8,"max_outliers":256}' "$tmp/p1" || bad "h100: the GEMV boundary is not shown"
fi
grep -q "^warning: quantization_config.llm_int8_threshold 6: applied by cuda_int8" "$tmp/p1" ||
  bad "h100: no line saying where the threshold applies: $(grep '^warning' "$tmp/p1")"
timeout 60 "$QRT" plan "$tmp/int8" --target h100 --json --no-tuning-cache 2>/dev/null |
  python3 -c "import json, sys; d = json.load(sys.stdin)
l = d['layers']; assert len(l) == 14, len(l)
assert all(x['llm_int8_threshold'] == 6 and x['choices'][0]['backend'] == 'cuda_int8' for x in l), l[0]" ||
  bad "plan --target h100 --json: llm_int8_threshold / cuda_int8"
[ "$fail" -eq 0 ] && echo "ok [h100] cuda_int8 for every M, threshold in the notes, the warning and --json"

# 2. Without cuda_int8, and on Turing.
plan "$tmp/int8" --target h100 --disable cuda_int8 >"$tmp/p2"
grep -q "q_proj .*cuda_gemv (M 1-16)" "$tmp/p2" || bad "--disable cuda_int8: q_proj not on cuda_gemv first"
grep -q "^  cuda_int8 " "$tmp/p2" && bad "--disable cuda_int8: still in the summary"
plan "$tmp/int8" --target t4 >"$tmp/p3"
grep -q "^  cuda_dequant *14 layers (all M)" "$tmp/p3" || bad "t4: not every layer on cuda_dequant"
[ "$fail" -eq 0 ] && echo "ok [fallbacks] --disable cuda_int8 gives the weight-only plan; t4 runs cuda_dequant"

# 3. Threshold 0.
plan "$tmp/int8_t0" --target h100 >"$tmp/p4"
grep -q "LLM.int8 without decomposition (llm_int8_threshold 0)" "$tmp/p4" || bad "threshold 0: no note"
grep -q "llm_int8_threshold 0: no outlier decomposition" "$tmp/p4" || bad "threshold 0: no warning"
[ "$fail" -eq 0 ] && echo "ok [threshold 0] no decomposition, said so"

# 4. The CPU runs it weight-only; bench takes --backend cuda_int8.
timeout 60 "$QRT" run -m "$tmp/int8" -p "Hello world" -n 3 -t 2 --device cpu >"$tmp/r" 2>"$tmp/r.err" ||
  bad "run on the CPU: $(tail -n 2 "$tmp/r.err")"
grep -q "llm_int8_threshold 6: applied by cuda_int8" "$tmp/r.err" || bad "run: no line on the threshold"
timeout 60 "$QRT" bench "$tmp/int8" --backend cuda_int8,cpu_ref --batch 1 --max-time 0.2 --min-time 0.01 -t 1 \
  >"$tmp/b" 2>&1 || bad "bench --backend cuda_int8: $(tail -n 2 "$tmp/b")"
grep -q "cuda_int8" "$tmp/b" || bad "bench: cuda_int8 not mentioned: $(head -n 5 "$tmp/b")"
[ "$fail" -eq 0 ] && echo "ok [cpu] run generates weight-only; bench accepts --backend cuda_int8"

exit "$fail"
