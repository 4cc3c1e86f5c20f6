#!/usr/bin/env bash
# Diagnostic for docs/KNOWN_ISSUES.md, "cuda_gemv at M = 4" (run on the GPU machine after scripts/gpu-check.sh, which
# builds build-gpu/qrt and writes the random Llama-2-7B model). In the full `qrt tune` the cuda_gemv
# default at M = 4 times ~12 % slower than alone (23.2 vs 20.5 us on 4096x11008), so a candidate
# that loses in `qrt bench` wins there. A: cuda_gemv alone; B: cuda_marlin's candidates (M up to
# 128, as in the full tune) first, then cuda_gemv; SM clock, temperature and throttle reasons
# sampled every 200 ms during B.
MODEL=${1:-/tmp/qrt-llama2-7b-gptq}
OUT=${OUT:-/tmp}
Q=build-gpu/qrt
gemv_rows() { grep -E '^cuda_gemv +4096x(11008|12288) .* 4 ' | cut -c1-100; }
echo "== A: cuda_gemv alone, M = 1,4"
$Q tune "$MODEL" --device cuda --backends cuda_gemv --batch 1,4 --cache /tmp/probe-a.json --retune --repeats 9 -q | gemv_rows
echo "== B: cuda_marlin then cuda_gemv, M = 1..128"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,clocks_throttle_reasons.active \
  --format=csv,noheader,nounits -lms 200 > /tmp/probe-clocks.csv 2>/dev/null &
SMI=$!
$Q tune "$MODEL" --device cuda --backends cuda_marlin,cuda_gemv --batch 1,4,16,32,64,128 --cache /tmp/probe-b.json --retune \
  --repeats 9 -q | gemv_rows
kill $SMI 2>/dev/null
python3 - <<'PY'
rows = [l.split(', ') for l in open('/tmp/probe-clocks.csv') if l.count(',') >= 4]
sm = [float(r[0]) for r in rows]; temp = [float(r[2]) for r in rows]; pw = [float(r[3]) for r in rows]
reasons = sorted({r[4].strip() for r in rows})
if rows:
    print(f"B clocks over {len(rows)} samples: SM MHz min {min(sm):.0f} max {max(sm):.0f}; "
          f"temp max {max(temp):.0f} C; power max {max(pw):.0f} W; throttle reasons seen {reasons}")
    print("SM MHz, last 12 samples:", [int(x) for x in sm[-12:]])
PY
