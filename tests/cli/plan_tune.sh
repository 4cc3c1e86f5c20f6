#!/usr/bin/env bash
# qrt plan / qrt tune on the default model: the table for the local CPU and for --target h100, the
# JSON form, clear errors (unknown backend, impossible explicit backend: exit 1 with reasons), a
# corrupt tuning cache named in the error, and tune -> plan showing "tuned" parameters.
# Skips (exit 0 with a message) when QRT_DEFAULT_MODEL is unset or missing.
# Usage: plan_tune.sh <path-to-qrt> <tests/data>
set -euo pipefail
qrt="$1"
model="${QRT_DEFAULT_MODEL:-}"
if [ -z "$model" ] || [ ! -f "$model" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL unset or missing (scripts/fetch-model.sh prints the path)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $1"; [ -f "$tmp/out.txt" ] && cat "$tmp/out.txt"; exit 1; }

"$qrt" plan "$model" --no-tuning-cache >"$tmp/out.txt" || fail "plan on the CPU exited non-zero"
grep -q "model.layers.\*.mlp.down_proj" "$tmp/out.txt" || fail "no grouped down_proj row"
grep -q "cpu_simd .*211 layers\|cpu_ref .*211 layers" "$tmp/out.txt" || fail "no summary line"
grep -q "not built in this binary\|cuda_" "$tmp/out.txt" || fail "CUDA backends silently absent"

"$qrt" plan "$model" --target h100 --no-tuning-cache >"$tmp/out.txt" || fail "plan --target h100 exited non-zero"
grep -q "H100" "$tmp/out.txt" || fail "no H100 device line"
# Q4_1 (float zero points) on the fast kernels, saying how; cuda_dequant above marlin's M range.
grep -q "q_proj .*cuda_gemv (M 1-16), cuda_marlin (M 17-128), cuda_dequant (M>=129)" "$tmp/out.txt" ||
  fail "Q4_1 should run on cuda_gemv / cuda_marlin on h100"
grep -q "note: cuda_marlin: GGUF float zero points" "$tmp/out.txt" || fail "no note on the float zero points"
grep -q "float zero offsets (GGUF-style min) unsupported" "$tmp/out.txt" && fail "float zeros still rejected"

# Turing and Volta: cuda_dequant (dequantize + cuBLAS) for every layer, with the reason.
for t in t4 v100; do
  "$qrt" plan "$model" --target "$t" --no-tuning-cache >"$tmp/out.txt" || fail "plan --target $t exited non-zero"
  grep -q "^  cuda_dequant   211 layers (all M)" "$tmp/out.txt" || fail "$t: not every layer on cuda_dequant"
  grep -q "NO backend" "$tmp/out.txt" && fail "$t: a layer without a backend"
  grep -q "cuda_gemv, cuda_marlin, cuda_int8: needs compute capability >= 8.0" "$tmp/out.txt" || fail "$t: no sm_80 reason"
done

"$qrt" plan "$model" --verbose --no-tuning-cache >"$tmp/out.txt"
[ "$(grep -c '^model.layers.[0-9]*\.' "$tmp/out.txt")" -eq 210 ] || fail "--verbose should print 210 layer rows"

"$qrt" plan "$model" --json --no-tuning-cache >"$tmp/plan.json"
grep -q '"layers_without_backend": 0' "$tmp/plan.json" || { cat "$tmp/plan.json" | head -50; fail "json summary"; }
grep -q '"source": "default"' "$tmp/plan.json" || fail "json lacks parameter sources"

set +e
"$qrt" plan "$model" --backend triton >"$tmp/out.txt" 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unknown backend: expected exit 2, got $rc"
grep -q "not implemented in qrt; available: auto, cpu_ref" "$tmp/out.txt" || fail "triton message"

set +e
"$qrt" plan "$model" --target t4 --backend marlin --no-tuning-cache >"$tmp/out.txt" 2>&1; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "impossible explicit backend: expected exit 1, got $rc"
grep -q "needs compute capability >= 8.0 (sm_80); Tesla T4 is sm_75" "$tmp/out.txt" || fail "no sm_80 reason"
grep -q "NO backend" "$tmp/out.txt" || fail "no NO backend summary"

echo '{ "format": "qrt-tuning-cache", ' >"$tmp/bad.json"
set +e
"$qrt" plan "$model" --tuning-cache "$tmp/bad.json" >"$tmp/out.txt" 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "corrupt cache: expected exit 2, got $rc"
grep -q "$tmp/bad.json" "$tmp/out.txt" || fail "corrupt cache error does not name the file"
"$qrt" plan "$model" --tuning-cache "$tmp/bad.json" --ignore-bad-tuning-cache >"$tmp/out.txt" 2>&1 ||
  fail "--ignore-bad-tuning-cache should run on defaults"

"$qrt" tune "$model" --cache "$tmp/tune.json" --batch 1,8 --repeats 3 --warmup 1 -t 2 -q >"$tmp/out.txt" ||
  fail "tune exited non-zero"
grep -q "entries written" "$tmp/out.txt" || fail "tune summary"
"$qrt" plan "$model" --tuning-cache "$tmp/tune.json" >"$tmp/out.txt" || fail "plan with the tuned cache"
grep -q "(tuned)" "$tmp/out.txt" || fail "plan does not show tuned parameters"
echo "ok"
