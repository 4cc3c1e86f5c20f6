#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu-check.sh (its build-gpu): Nsight Compute's view of
# cuda_marlin's tensor-core kernel (qmm_kernel) where it loses to fp16 cuBLAS, so that the next
# change to it starts from what bounds it rather than from a guess (issue 13, item 1).
#
# For the Llama-2-7B q/k/v shape (K 4096, N 12288) at M = 16, 64 and 128 it profiles one launch
# of the kernel gpu_int4_bench picks, with the sections that say what bounds a kernel: speed of
# light (SM and DRAM throughput), occupancy and launch statistics (registers, shared memory,
# blocks per SM), the warp states (what the warps wait on) and the scheduler statistics (issue
# slots used). Then one table: per M, duration, DRAM and SM throughput, achieved occupancy,
# registers, eligible warps per scheduler, issue-slot use and the top three stall reasons.
#   tools/gpu_int4_profile.sh [OUT_DIR]   (default $OUT or ./gpu-out; ncu's raw text goes there)
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-./gpu-out}}
mkdir -p "$OUTDIR"
B=build-gpu/bench/gpu_int4_bench
[ -x "$B" ] || { echo "gpu_int4_profile: $B is not built (scripts/gpu-check.sh builds it)"; exit 1; }
command -v ncu > /dev/null || { echo "gpu_int4_profile: no ncu on this machine"; exit 1; }

# The kernel the bench picked on the H100 (2026-12-06) per M: the 16-row tile with 4 x 2 warps at
# M = 16, the 32-row tile with 8 x 1 warps above (qmm_kernel<T, BITS, MT, NT, FZ>, MT = rows / 8).
# ncu writes the bool as 0 / 1; '<' and '>' are plain characters in its regular expressions.
declare -A PICK=([16]="qmm_kernel<__half, 4, 2, 2, 0>" [64]="qmm_kernel<__half, 4, 4, 1, 0>"
                 [128]="qmm_kernel<__half, 4, 4, 1, 0>")
for M in 16 64 128; do
  # The bench replays graphs of many launches of each candidate: the 20th launch of the picked
  # variant is past its warm-up.
  timeout 150 ncu --clock-control none --kernel-name-base demangled -k "regex:${PICK[$M]}" \
    --launch-skip 20 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section MemoryWorkloadAnalysis \
    "$B" --shape 4096 12288 --m "$M" > "$OUTDIR/ncu-qmm-m$M.txt" 2>&1
  echo "ncu M=$M rc=$? ($(wc -l < "$OUTDIR/ncu-qmm-m$M.txt") lines)"
done

python3 - "$OUTDIR" <<'PY'
import re, sys, os
out = sys.argv[1]
# ncu's text report: "    Metric Name     Unit     Value" rows under each section.
want = [("Duration", "duration"), ("DRAM Throughput", "dram %"), ("Compute (SM) Throughput", "sm %"),
        ("Achieved Occupancy", "occupancy %"), ("Registers Per Thread", "regs"),
        ("Eligible Warps Per Scheduler", "eligible"), ("Issue Slots Busy", "issue %"),
        ("Block Limit Registers", "blk lim regs"), ("Block Limit Shared Mem", "blk lim smem")]
print("%-6s %s" % ("M", "  ".join("%-12s" % w[1] for w in want)))
for m in (16, 64, 128):
    path = os.path.join(out, "ncu-qmm-m%d.txt" % m)
    if not os.path.exists(path):
        continue
    text = open(path, errors="replace").read()
    kernel = re.search(r"^\s*(\S*qmm_kernel[^\n]*)", text, re.M)
    vals = []
    for name, _ in want:
        r = re.search(r"^\s*%s\s+(\S+)\s+([\d.,]+)\s*$" % re.escape(name), text, re.M)
        vals.append((r.group(2) + " " + r.group(1)) if r else "-")
    print("%-6d %s" % (m, "  ".join("%-12s" % v for v in vals)))
    if kernel:
        print("       kernel: %s" % kernel.group(1)[:100])
    # WarpStateStats prints its stall breakdown only as rule text; keep the lines that name a stall.
    stalls = [l.strip() for l in text.splitlines() if "stall" in l.lower() and "cycles" in l.lower()][:3]
    for s in stalls:
        print("       " + s[:160])
PY
