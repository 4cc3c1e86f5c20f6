#!/usr/bin/env bash
# qrt bench as the README promises it: backend aliases accepted (--backends ref,simd), HIGGS
# weights for the HIGGS backends (--backends cpu_higgs alone, or --format higgs), every
# option checked before anything is timed (--backends plan on the CPU, unknown backends, a --plot
# or --json path that cannot be written, timing limits), `--json -` writes the JSON alone to
# standard output, and a model's quantized lm_head is benchmarked (and tuned) like its other linears.
#   bash tests/cli/bench_validation.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: bench_validation.sh <qrt> <tests/data>}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
quick=(--shape 64x64 --batch 1 --no-dense --min-time 0 --max-time 0.01 -t 1)

q() { timeout 120 "$QRT" bench "$@" >"$tmp/out" 2>"$tmp/err"; }
q "${quick[@]}" --backends ref,simd || bad "aliases ref,simd: exit $?: $(head -n 1 "$tmp/err")"
grep -Eq '^cpu_ref +1 ' "$tmp/out" && grep -Eq '^cpu_simd +1 ' "$tmp/out" ||
  bad "aliases ref,simd: no cpu_ref and cpu_simd rows: $(cat "$tmp/out")"
q "${quick[@]}" --backends marlin || bad "--backends marlin: exit $?: $(head -n 1 "$tmp/err")"
grep -q '^cuda_marlin .*skipped\|^cuda_marlin ' "$tmp/out" || bad "--backends marlin: no cuda_marlin line: $(cat "$tmp/out")"

# The HIGGS backends time HIGGS weights: by themselves without another flag, next to cpu_ref with
# --format higgs (--p, --hadamard-size); cuda_higgs on the CPU is skipped with its reason.
q "${quick[@]}" --backends cpu_higgs || bad "--backends cpu_higgs: exit $?: $(head -n 1 "$tmp/err")"
grep -q 'codebook p2 hadamard 64' "$tmp/out" && grep -Eq '^cpu_higgs +1 ' "$tmp/out" ||
  bad "--backends cpu_higgs: no HIGGS shape timed on cpu_higgs: $(cat "$tmp/out")"
q "${quick[@]}" --backends cpu_higgs,cpu_ref,cuda_higgs --format higgs --bits 2 --p 1 --hadamard-size 16 ||
  bad "--format higgs: exit $?: $(head -n 1 "$tmp/err")"
grep -q '2-bit g128 codebook p1 hadamard 16\|2-bit per-row codebook p1 hadamard 16' "$tmp/out" &&
  grep -Eq '^cpu_higgs +1 ' "$tmp/out" && grep -Eq '^cpu_ref +1 ' "$tmp/out" && grep -q '^cuda_higgs .*skipped' "$tmp/out" ||
  bad "--format higgs: $(cat "$tmp/out")"

refused_before_timing() {  # LABEL TEXT bench-args...
  local label="$1" text="$2"; shift 2
  q "$@"; local rc=$?
  [ "$rc" -eq 2 ] || bad "$label: exit $rc, expected 2"
  grep -q "^qrt: error: .*$text" "$tmp/err" || bad "$label: $(head -n 1 "$tmp/err")"
  grep -q 'memory read bandwidth\|median us' "$tmp/out" && bad "$label: timing started before the error"
  [ -e "$tmp/nodir" ] && bad "$label: created a file"
}
refused_before_timing "--backends plan on the CPU" "--backends plan" "${quick[@]}" --backends cpu_ref,plan
refused_before_timing "unknown backend" "unknown backend 'nosuch'" "${quick[@]}" --backends cpu_ref,nosuch
refused_before_timing "--plot into a missing folder" "--plot $tmp/nodir/p.svg: no folder" "${quick[@]}" --plot "$tmp/nodir/p.svg"
refused_before_timing "--json into a folder" "--json $tmp: is a folder" "${quick[@]}" --json "$tmp"
refused_before_timing "--max-time below --min-time" "--max-time" --shape 64x64 --min-time 2 --max-time 1
refused_before_timing "--tuning-cache on the CPU" "--tuning-cache" "${quick[@]}" --tuning-cache "$tmp/t.json"
refused_before_timing "--format" "--format 'gguf'" "${quick[@]}" --format gguf
refused_before_timing "--p 3" "--p 3" "${quick[@]}" --format higgs --p 3
refused_before_timing "--p without HIGGS weights" "--p and --hadamard-size apply to --format higgs" "${quick[@]}" --backends cpu_ref --p 1

# --json -: standard output is exactly the JSON; the table is on standard error.
q "${quick[@]}" --backends cpu_ref --json - || bad "--json -: exit $?: $(head -n 1 "$tmp/err")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["rows"] and d["rows"][0]["backend"]=="cpu_ref"' \
  "$tmp/out" || bad "--json -: standard output is not the JSON: $(head -c 300 "$tmp/out")"
grep -q 'median us' "$tmp/err" || bad "--json -: the table is not on standard error"
[ -e ./- ] && bad "--json -: wrote a file named '-'"

MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP (the rest): QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit "$fail"
fi
# The default model's tied embedding is stored Q8_0 and runs as a quantized lm_head (576 -> 49152):
# bench times it and tune tunes it.
q "$MODEL" --backends cpu_ref --batch 1 --no-dense --min-time 0 --max-time 0.01 -t 1 ||
  bad "bench MODEL: exit $?: $(head -n 1 "$tmp/err")"
grep -q '576x49152' "$tmp/out" || bad "bench MODEL: no lm_head (576x49152) row: $(grep -i shape "$tmp/out" | head -n 5)"
timeout 300 "$QRT" tune "$MODEL" --cache "$tmp/tune.json" --backends cpu_simd --batch 1 --repeats 1 --warmup 0 -t 1 -q \
  >"$tmp/out" 2>"$tmp/err" || bad "tune MODEL: exit $?: $(head -n 1 "$tmp/err")"
grep -q '576x49152' "$tmp/out" || bad "tune MODEL: the lm_head (576x49152) was not tuned"

[ "$fail" -eq 0 ] && echo "OK: bench_validation"
exit "$fail"
