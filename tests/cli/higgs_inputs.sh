#!/usr/bin/env bash
# HIGGS through the CLI on the committed tiny model (tests/data/fixtures/higgs_tiny_llama): `qrt plan`
# shows the rotated codebook layers on cpu_higgs with the tile of each layer's tune_metadata, and
# `qrt plan --target h100` on cuda_higgs with the same tile (a CPU-only build plans the GPU from the
# declared capabilities), and bad HIGGS input (NaN scales,
# a hadamard_size that is not a power of 2, tune_metadata that disagrees with the layer, a missing
# tune_metadata entry) is one error line naming the file, tensor or field, exit 2.
#   bash tests/cli/higgs_inputs.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: higgs_inputs.sh <qrt> <tests/data>}"
DATA="${2:?usage: higgs_inputs.sh <qrt> <tests/data>}"
SRC="$DATA/fixtures/higgs_tiny_llama"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

timeout 60 "$QRT" plan "$SRC" --device cpu >"$tmp/plan" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "plan: exit $rc: $(tail -n 3 "$tmp/plan")"
grep -q 'q_proj .*4-bit g64 codebook p2 hadamard 128 *cpu_higgs (all M) *{"tile_n":128} (checkpoint tune_metadata)' "$tmp/plan" ||
  bad "plan: no HIGGS q_proj row on cpu_higgs with the tile of its tune_metadata: $(grep q_proj "$tmp/plan")"
[ "$fail" -eq 0 ] && echo "ok [plan] HIGGS layers and tune_metadata shown"
timeout 60 "$QRT" plan "$SRC" --target h100 >"$tmp/plan_gpu" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "plan --target h100: exit $rc: $(tail -n 3 "$tmp/plan_gpu")"
# A CUDA build shows cuda_higgs' other defaults next to the tile ({"lut_max_m":8,"tile_n":128}).
grep -q 'q_proj .*4-bit g64 codebook p2 hadamard 128 *cuda_higgs (all M) *{[^}]*"tile_n":128[^}]*} (checkpoint tune_metadata)' "$tmp/plan_gpu" ||
  bad "plan --target h100: no HIGGS q_proj row on cuda_higgs with the tile of its tune_metadata: $(grep q_proj "$tmp/plan_gpu")"
grep -q 'cpu_higgs (all M)' "$tmp/plan_gpu" && bad "plan --target h100: cpu_higgs chosen on a GPU: $(grep cpu_higgs "$tmp/plan_gpu")"
grep -q 'cuda_dequant: rotated-codebook weights unsupported' "$tmp/plan_gpu" ||
  bad "plan --target h100: no reason why cuda_dequant passed the HIGGS layers over"
[ "$fail" -eq 0 ] && echo "ok [plan --target h100] HIGGS layers on cuda_higgs with their tune_metadata tile"
timeout 60 "$QRT" dequantize "$SRC" "$tmp/float" --dtype f32 >"$tmp/deq" 2>&1 || bad "dequantize: $(tail -n 2 "$tmp/deq")"
grep -q "(14 dequantized)" "$tmp/deq" || bad "dequantize: $(cat "$tmp/deq")"

# expect_bad LABEL EXPECTED_TEXT FOLDER
expect_bad() {
  timeout 60 "$QRT" plan "$3" --device cpu >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne 2 ]; then bad "$1: exit $rc, expected 2: $(head -n 2 "$tmp/err")"
  elif [ "$(wc -l <"$tmp/err")" -ne 1 ]; then bad "$1: more than one line on stderr: $(head -n 3 "$tmp/err")"
  elif ! grep -qF -- "$2" "$tmp/err"; then bad "$1: error does not mention '$2': $(cat "$tmp/err")"
  else echo "ok [$1] $(cat "$tmp/err")"
  fi
}

# edit NAME PYTHON: a copy of the model, then PYTHON run with `d` = its folder.
edit() {
  cp -r "$SRC" "$tmp/$1"
  python3 -c "import json, struct, sys; d = sys.argv[1]
$2" "$tmp/$1" || bad "$1: could not edit the copy"
}

edit nan "
b = bytearray(open(d + '/model.safetensors', 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h['model.layers.1.mlp.up_proj.scales']['data_offsets'][0]
b[off + 6:off + 8] = b'\x00\x7e'
open(d + '/model.safetensors', 'wb').write(b)"
expect_bad "NaN scale" "model.layers.1.mlp.up_proj.scales: value 3 is NaN" "$tmp/nan"

edit hadamard "
c = json.load(open(d + '/config.json')); c['quantization_config']['hadamard_size'] = 192
json.dump(c, open(d + '/config.json', 'w'))"
expect_bad "hadamard_size" "quantization_config.hadamard_size 192 is not a power of 2" "$tmp/hadamard"

edit metadata "
c = json.load(open(d + '/config.json')); c['quantization_config']['tune_metadata']['model.layers.0.self_attn.o_proj']['N'] = 64
json.dump(c, open(d + '/config.json', 'w'))"
expect_bad "tune_metadata N" "model.layers.0.self_attn.o_proj: quantization_config.tune_metadata.N: 64 does not match the layer's 128" "$tmp/metadata"

edit missing "
c = json.load(open(d + '/config.json')); del c['quantization_config']['tune_metadata']['model.layers.1.mlp.gate_proj']
json.dump(c, open(d + '/config.json', 'w'))"
expect_bad "no tune_metadata" "model.layers.1.mlp.gate_proj: quantization_config.tune_metadata has no entry" "$tmp/missing"

exit "$fail"
