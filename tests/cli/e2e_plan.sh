#!/usr/bin/env bash
# End to end: `qrt plan` on the default model, for this CPU, for --target h100, and the errors.
#   bash tests/cli/e2e_plan.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_plan.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export QRT_DISABLE_BACKENDS=   # a developer's environment must not change the plan
fail=0
bad() { echo "FAIL: $*"; fail=1; }
run_plan() { timeout 60 "$QRT" plan "$MODEL" --no-tuning-cache "$@" >"$tmp/out" 2>"$tmp/err"; }

# 1. The local CPU: a table, a summary, every layer on a CPU backend, exit 0.
run_plan; rc=$?
[ "$rc" -eq 0 ] || bad "plan (cpu): exit $rc: $(head -n 2 "$tmp/err")"
grep -q '^layer ' "$tmp/out" || bad "plan (cpu): no table header"
grep -q 'self_attn.q_proj' "$tmp/out" || bad "plan (cpu): no q_proj row"
grep -q 'mlp.down_proj' "$tmp/out" || bad "plan (cpu): no down_proj row"
grep -q '^summary:' "$tmp/out" || bad "plan (cpu): no summary"
# 30 blocks x 7 linears + the tied embedding stored as Q8_0, which runs as a quantized lm_head.
grep -Eq 'cpu_(simd|ref) +211 layers' "$tmp/out" || bad "plan (cpu): summary is not 211 layers on a CPU backend"
grep -q '^lm_head ' "$tmp/out" || bad "plan (cpu): no lm_head row (the run executes the quantized tied head)"

# 2. A target profile that is not this machine: still a full plan, exit 0.
run_plan --target h100; rc=$?
[ "$rc" -eq 0 ] || bad "plan --target h100: exit $rc: $(head -n 2 "$tmp/err")"
grep -qi 'h100' "$tmp/out" || bad "plan --target h100: the device line does not name the H100"
# Layers served at M = 1 ("all M", "M 1-8", "M=1"), summed over the CUDA backends of the summary.
m1="$(sed -n '/^summary:/,$p' "$tmp/out" | grep -E '^  cuda_' | grep -oE '[0-9]+ layers \((all M|M 1-[0-9]+|M=1)\)' |
      awk '{ n += $1 } END { print n + 0 }')"
[ "$m1" = 211 ] || bad "plan --target h100: the summary puts $m1 layers (not 211) on CUDA backends at M = 1"
# The GPU engine fuses each block's q/k/v (576x960) and gate/up (576x3072): the summary says so.
grep -Eq '^  fused +30 q/k/v groups as 576x960: cuda_' "$tmp/out" || bad "plan --target h100: no fused q/k/v line"
grep -Eq '^  fused +30 gate/up groups as 576x3072: cuda_' "$tmp/out" || bad "plan --target h100: no fused gate/up line"
timeout 60 "$QRT" plan "$MODEL" --no-tuning-cache --target h100 --json >"$tmp/plan.json" 2>"$tmp/err"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); f=d['fused_layers']; assert len(f)==60, len(f); \
assert f[0]['name']=='model.layers.0.self_attn.q_proj+k_proj+v_proj' and f[0]['n']==960, f[0]['name']" "$tmp/plan.json" \
  || bad "plan --target h100 --json: fused_layers missing or wrong"

# 3. Disabled backend is skipped.
run_plan --disable cpu_simd; rc=$?
[ "$rc" -eq 0 ] || bad "plan --disable cpu_simd: exit $rc"
grep -Eq 'cpu_ref +211 layers' "$tmp/out" || bad "plan --disable cpu_simd: layers not on cpu_ref"

# 4. JSON for machines.
run_plan --json; rc=$?
[ "$rc" -eq 0 ] || bad "plan --json: exit $rc"
[ "$(head -c 1 "$tmp/out")" = '{' ] || bad "plan --json: output does not start with '{'"
grep -q '"model"' "$tmp/out" || bad "plan --json: no \"model\" key"

# 5. A backend qrt does not implement: non-zero (<128), one line, names what is available.
run_plan --backend triton; rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "plan --backend triton: exit $rc, expected 1..127"
grep -q 'triton' "$tmp/err" || bad "plan --backend triton: the error does not name triton"
grep -q 'available' "$tmp/err" && grep -q 'cpu_ref' "$tmp/err" || bad "plan --backend triton: the error does not list the available backends"

# 6. A real backend that cannot run here (CUDA kernel on the CPU): non-zero, the reason is given.
run_plan --backend cuda_marlin; rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "plan --backend cuda_marlin on cpu: exit $rc, expected 1..127"
grep -q 'cuda_marlin' "$tmp/out" "$tmp/err" || bad "plan --backend cuda_marlin: no reason naming cuda_marlin"

# 7. The plan lists exactly the layers the run executes through a backend ("backends: cpu_ref x N").
run_plan --backend cpu_ref; rc=$?
plan_n="$(sed -nE 's/^ +cpu_ref +([0-9]+) layers.*/\1/p' "$tmp/out" | head -n 1)"
timeout 120 "$QRT" run -m "$MODEL" -p "Hi" -n 1 -t 2 --backend cpu_ref --no-tuning-cache >/dev/null 2>"$tmp/run_err"
run_n="$(sed -nE 's/.*backends: .*cpu_ref x ([0-9]+).*/\1/p' "$tmp/run_err" | head -n 1)"
if [ -z "$plan_n" ] || [ -z "$run_n" ] || [ "$plan_n" != "$run_n" ]; then
  bad "plan says ${plan_n:-?} layers on cpu_ref, run says ${run_n:-?}: $(grep 'backends:' "$tmp/run_err")"
fi

[ "$fail" -eq 0 ] && echo "OK: e2e_plan"
exit "$fail"
