#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu-check.sh (its build-gpu): Nsight Compute's view of
# cuda_marlin's tensor-core kernel (qmm_kernel) where it loses to fp16 cuBLAS, so that the next
# change to it starts from what bounds it rather than from a guess (issue 13, item 1).
#
# For the Llama-2-7B q/k/v shape (K 4096, N 12288) at M = 16, 64 and 128 it profiles one launch
# of the kernel gpu_int4_bench picks with ncu's full metric set, then prints per M what says what
# bounds a kernel: duration, launch shape and occupancy limits, DRAM / L2 / L1 / SM throughput,
# issue-slot use, eligible warps, shared-memory bank conflicts, the stall reasons and the pipes'
# use, largest first.
#   tools/gpu_int4_profile.sh [OUT_DIR] [wgmma|gemv|both]   (default $OUT or ./gpu-out; ncu's CSV goes there)
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-./gpu-out}}
mkdir -p "$OUTDIR"
B=build-gpu/bench/gpu_int4_bench
[ -x "$B" ] || { echo "gpu_int4_profile: $B is not built (scripts/gpu-check.sh builds it)"; exit 1; }
command -v ncu > /dev/null || { echo "gpu_int4_profile: no ncu on this machine"; exit 1; }

# The kernel the bench picked on the H100 (2026-12-06) per M: the 16-row tile with 4 x 2 warps at
# M = 16, the 32-row tile with 8 x 1 warps above (qmm_kernel<T, BITS, MT, NT, FZ>, MT = rows / 8).
# The bool prints as 0 / 1 or false / true depending on the demangler; '<' and '>' are plain
# characters in ncu's regular expressions. Each run is NAME M REGEX.
I='(\(int\))?'
BL='(\(bool\))?(0|false)'
QMM=("qmm 16 qmm_kernel<__half, ${I}4, ${I}2, ${I}2, $BL>"
     "qmm 64 qmm_kernel<__half, ${I}4, ${I}4, ${I}1, $BL>"
     "qmm 128 qmm_kernel<__half, ${I}4, ${I}4, ${I}1, $BL>")
# The Hopper kernel with the token tile covering M.
WG=("wgmma 64 qmm_wgmma_kernel<__half, ${I}64(, ${I}[0-9]+)*>"
    "wgmma 128 qmm_wgmma_kernel<__half, ${I}128(, ${I}[0-9]+)*>")
# cuda_gemv (gemv_kernel<T, BITS, WT, FZ, BULK, MT>) at M = 4 (one n8 token tile) and 16 (two):
# the 16-row launch takes about 1.8 x the 4-row one where the weight stream is the same.
GV=("gemv 4 gemv_kernel<__half, ${I}4, ${I}[0-9]+, $BL, $BL, ${I}1>"
    "gemv 16 gemv_kernel<__half, ${I}4, ${I}[0-9]+, $BL, $BL, ${I}2>")
case "${2:-}" in
  wgmma) RUNS=("${WG[@]}") ;;
  gemv) RUNS=("${GV[@]}") ;;
  both) RUNS=("${QMM[0]}" "${QMM[2]}" "${WG[@]}") ;;
  *) RUNS=("${QMM[@]}") ;;
esac
rm -f "$OUTDIR"/ncu-*.csv
for run in "${RUNS[@]}"; do
  read -r NAME M RX <<< "$run"
  # The bench replays graphs of many launches of each candidate: the 20th launch of the picked
  # variant is past its warm-up. The full set, printed as the raw metric page in CSV, holds every
  # number the table below needs (stall reasons, pipe use, bank conflicts, L2 hit rate).
  timeout 70 ncu --clock-control none --kernel-name-base demangled -k "regex:$RX" \
    --launch-skip 20 --launch-count 1 --set full --import-source no --page raw --csv \
    "$B" --shape 4096 12288 --m "$M" > "$OUTDIR/ncu-$NAME-m$M.csv" 2>&1
  echo "ncu $NAME M=$M rc=$? ($(wc -l < "$OUTDIR/ncu-$NAME-m$M.csv") lines)"
done

python3 - "$OUTDIR" <<'PY'
import csv, os, re, sys
out = sys.argv[1]
# Metrics shown as they are, then the groups shown largest first.
plain = ["gpu__time_duration.sum", "launch__grid_size", "launch__registers_per_thread",
         "launch__shared_mem_per_block_dynamic", "launch__occupancy_limit_registers",
         "launch__occupancy_limit_shared_mem", "sm__warps_active.avg.pct_of_peak_sustained_active",
         "dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram__bytes_read.sum",
         "lts__throughput.avg.pct_of_peak_sustained_elapsed", "lts__t_sector_hit_rate.pct",
         "l1tex__throughput.avg.pct_of_peak_sustained_active", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
         "smsp__issue_active.avg.pct_of_peak_sustained_active", "smsp__warps_eligible.avg.per_cycle_active",
         "smsp__inst_executed.sum", "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
         "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"]
groups = [("stalls (warps per issue)", re.compile(r"smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio$"), 8),
          ("pipes (% of peak, active)", re.compile(r"sm__(?:inst_executed_)?pipe_(\w+?)(?:_cycles_active)?\.avg\.pct_of_peak_sustained_active$"), 8)]
import glob
for path in sorted(glob.glob(os.path.join(out, "ncu-*-m*.csv"))):
    m = os.path.basename(path)[4:-4]
    lines = open(path, errors="replace").read().splitlines()
    head = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if head is None or head + 2 >= len(lines):
        print("%s: no ncu rows; its last lines:" % m)
        for l in lines[-6:]:
            print("   " + l[:200])
        continue
    rows = list(csv.reader(lines[head:head + 3]))
    names, units, vals = rows[0], rows[1], rows[2]
    d = {n: (v, u) for n, u, v in zip(names, units, vals)}
    print("%s  kernel: %s" % (m, d.get("Kernel Name", ("?", ""))[0][:110]))
    for n in plain:
        if n in d:
            print("   %-62s %14s %s" % (n, d[n][0], d[n][1]))
    for title, rx, top in groups:
        hits = []
        for n, (v, u) in d.items():
            r = rx.match(n)
            if r:
                try:
                    hits.append((float(v.replace(",", "")), r.group(1)))
                except ValueError:
                    pass
        hits.sort(reverse=True)
        print("   %s: %s" % (title, ", ".join("%s %.2f" % (k, v) for v, k in hits[:top])))
PY
