#!/usr/bin/env bash
# The four quantization_config examples of qrt's brief, as transformers writes them into a
# checkpoint's config.json, through `qrt plan` and `qrt run` on a tiny random Llama
# (tests/cli/tiny_llama_folder.py): each runs, and the plan shows what it configured.
#   1. GPTQ with max_input_length: the plan's context line and --json, run -v's context line (the
#      KV cache holds max_input_length + max_new_tokens positions), a longer prompt refused.
#   2. AWQ with a backend: transformers' own value "autoawq" (the packing library) is shown as the
#      backend's source without a warning; a kernel name of the alias table ("gemm", and GPTQ's
#      "gptq_marlin", "exllamav2", "marlin_fp16") becomes the backend hint, and the model runs.
#   3. TorchAO int4_weight_only with Int4CPULayout on f16 weights: quantized on load into the
#      same layers as `--quantize int4 --group-size 32` (same generated tokens), planned on
#      cpu_simd with the layout as the reason; a layout qrt does not have is one warning line.
#   4. HIGGS with tune_metadata: each layer's entry reaches the plan and run -v.
#   bash tests/cli/seed_examples.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: seed_examples.sh <qrt> <tests/data>}"
HERE="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export QRT_DISABLE_BACKENDS=
fail=0
bad() { echo "FAIL: $*"; fail=1; }
# set_qc FOLDER PYTHON: edit FOLDER/config.json's quantization_config as `q`.
set_qc() {
  python3 -c "import json, sys; d = sys.argv[1]; c = json.load(open(d + '/config.json')); q = c.get('quantization_config', {})
$2
c['quantization_config'] = q; json.dump(c, open(d + '/config.json', 'w'), indent=1)" "$1" || bad "could not edit $1"
}
plan() { timeout 60 "$QRT" plan "$1" --device cpu "${@:2}" 2>&1; }
run_v() { timeout 60 "$QRT" run -m "$1" -p "Hello world" -n 3 -t 2 -v "${@:2}"; }

python3 "$HERE/tiny_llama_folder.py" "$tmp/f16" 5 || { echo "FAIL: could not write the tiny model"; exit 1; }
for m in gptq awq; do
  timeout 120 "$QRT" quantize "$tmp/f16" "$tmp/$m" --method $m --calib none --group-size 32 >/dev/null 2>"$tmp/q.err" ||
    bad "quantize $m: $(tail -n 2 "$tmp/q.err")"
done

# 1. GPTQ with max_input_length.
set_qc "$tmp/gptq" "q['max_input_length'] = 40"
plan "$tmp/gptq" >"$tmp/p1"
grep -qx "context: max_input_length 40 (checkpoint quantization_config.max_input_length)" "$tmp/p1" ||
  bad "gptq plan: no context line: $(head -n 6 "$tmp/p1")"
plan "$tmp/gptq" --json | python3 -c "import json, sys; c = json.load(sys.stdin)['config']
assert c['max_input_length'] == 40 and c['provenance']['max_input_length'].startswith('checkpoint'), c" ||
  bad "gptq plan --json: max_input_length"
run_v "$tmp/gptq" >/dev/null 2>"$tmp/r1" || bad "gptq run: $(tail -n 2 "$tmp/r1")"
grep -q "context 43 tokens (max_input_length 40, checkpoint quantization_config.max_input_length)" "$tmp/r1" ||
  bad "gptq run -v: $(grep context "$tmp/r1")"
long="$(printf 'word %.0s' $(seq 60))"
timeout 60 "$QRT" run -m "$tmp/gptq" -p "$long" -n 1 -t 2 >/dev/null 2>"$tmp/r1b"; rc=$?
[ "$rc" -eq 2 ] && grep -q "more than max_input_length 40" "$tmp/r1b" ||
  bad "gptq: a 60-word prompt: exit $rc: $(tail -n 1 "$tmp/r1b")"
[ "$fail" -eq 0 ] && echo "ok [gptq max_input_length] plan, plan --json, run -v, a longer prompt refused"

# 2. AWQ (and GPTQ) with a backend.
set_qc "$tmp/awq" "q['backend'] = 'autoawq'"
plan "$tmp/awq" >"$tmp/p2"
grep -qx "backend: auto (checkpoint quantization_config.backend 'autoawq': AutoAWQ's gemm packing, kernels chosen per layer)" "$tmp/p2" ||
  bad "awq autoawq plan: $(head -n 5 "$tmp/p2")"
grep -q "^warning:" "$tmp/p2" && bad "awq autoawq plan warns: $(grep '^warning:' "$tmp/p2")"
run_v "$tmp/awq" >/dev/null 2>"$tmp/r2" || bad "awq autoawq run: $(tail -n 2 "$tmp/r2")"
grep -q "backends: cpu_simd x 14" "$tmp/r2" || bad "awq autoawq run: $(grep backends "$tmp/r2")"
check_alias() {   # FOLDER NAME EXPECTED_BACKEND
  set_qc "$1" "q['backend'] = '$2'"
  plan "$1" >"$tmp/pa"
  grep -qx "backend: $3 (checkpoint quantization_config.backend '$2')" "$tmp/pa" || bad "backend $2: $(sed -n 3p "$tmp/pa")"
  grep -q "^warning:" "$tmp/pa" && bad "backend $2 warns: $(grep '^warning:' "$tmp/pa")"
  timeout 60 "$QRT" run -m "$1" -p "Hi" -n 1 -t 2 >/dev/null 2>"$tmp/ra" || bad "backend $2: run: $(tail -n 2 "$tmp/ra")"
}
check_alias "$tmp/awq" gemm cuda_dequant
for name in gptq_marlin exllamav2 marlin_fp16; do
  check_alias "$tmp/gptq" $name "$( [ $name = exllamav2 ] && echo cuda_gemv || echo cuda_marlin)"
done
[ "$fail" -eq 0 ] && echo "ok [awq backend] autoawq shown, gemm / gptq_marlin / exllamav2 / marlin_fp16 as hints"

# 3. TorchAO int4_weight_only with Int4CPULayout, as transformers serializes a TorchAoConfig object.
cp -r "$tmp/f16" "$tmp/torchao"
set_qc "$tmp/torchao" "q = {'quant_method': 'torchao', 'quant_type': {'default': {'_type': 'Int4WeightOnlyConfig', '_version': 1,
  '_data': {'group_size': 32, 'layout': {'_type': 'Int4CPULayout', '_version': 1, '_data': {}}}}}}"
plan "$tmp/torchao" >"$tmp/p3"
grep -qx "backend: cpu_simd (checkpoint quantization_config.layout Int4CPULayout)" "$tmp/p3" ||
  bad "torchao plan: $(sed -n 1,4p "$tmp/p3")"
grep -q "q_proj .*4-bit g32 asym *cpu_simd" "$tmp/p3" || bad "torchao plan: q_proj is not 4-bit g32 on cpu_simd: $(sed -n 6,8p "$tmp/p3")"
run_v "$tmp/torchao" >"$tmp/o3" 2>"$tmp/r3" || bad "torchao run: $(tail -n 2 "$tmp/r3")"
grep -q "backends: cpu_simd x 14" "$tmp/r3" || bad "torchao run: $(grep backends "$tmp/r3")"
run_v "$tmp/f16" --quantize int4 --group-size 32 >"$tmp/o3q" 2>/dev/null || bad "--quantize int4 run failed"
cmp -s "$tmp/o3" "$tmp/o3q" || bad "torchao on load and --quantize int4 generate differently: $(cat "$tmp/o3") / $(cat "$tmp/o3q")"
set_qc "$tmp/torchao" "q['quant_type']['default']['_data']['layout'] = {'_type': 'TensorCoreTiledLayout', '_version': 1, '_data': {'inner_k_tiles': 8}}"
plan "$tmp/torchao" >"$tmp/p3b"
[ "$(grep -c '^warning:.*layout TensorCoreTiledLayout' "$tmp/p3b")" -eq 1 ] || bad "torchao tiled: $(grep warning "$tmp/p3b")"
[ "$fail" -eq 0 ] && echo "ok [torchao Int4CPULayout] quantized on load as --quantize int4, cpu_simd, another layout named"

# 4. HIGGS with tune_metadata (a folder qrt quantize wrote: FLUTE's entries per layer).
timeout 120 "$QRT" quantize "$tmp/f16" "$tmp/higgs" --method higgs >/dev/null 2>"$tmp/q.err" || bad "quantize higgs: $(tail -n 2 "$tmp/q.err")"
plan "$tmp/higgs" >"$tmp/p4"
grep -q 'mlp.up_proj .*cpu_higgs (all M) *{"tile_n":128} (checkpoint tune_metadata)' "$tmp/p4" ||
  bad "higgs plan: the tile of tune_metadata is not the layer's parameter: $(grep up_proj "$tmp/p4")"
run_v "$tmp/higgs" >/dev/null 2>"$tmp/r4" || bad "higgs run: $(tail -n 2 "$tmp/r4")"
for i in 0 1; do
  grep -qx "qrt: runs model.layers.$i.mlp.up_proj M 1-max: cpu_higgs {\"tile_n\":128} (checkpoint tune_metadata)" "$tmp/r4" ||
    bad "higgs run -v: layer $i: $(grep "layers.$i.mlp.up_proj" "$tmp/r4")"
done
[ "$fail" -eq 0 ] && echo "ok [higgs tune_metadata] each layer's template tile is its cpu_higgs tile_n in the plan and run -v"
exit "$fail"
