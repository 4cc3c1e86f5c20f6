#!/usr/bin/env bash
# qrt bench on tiny shapes: the table prints, --json has the documented fields, --plot writes an SVG
# that is well-formed XML with the parts a reader needs (axes labels, one line per backend, legend).
# Usage: bench_plot.sh <path-to-qrt> <tests/data>
set -euo pipefail
qrt="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$qrt" bench --shape 256x64,96x40 --backends cpu_simd,cpu_ref --batch 1,3,17 --bits 4 --group-size 32 \
  --min-time 0.01 --max-time 0.2 -t 2 --json "$tmp/bench.json" --plot "$tmp/bench.svg" >"$tmp/out.txt"
grep -q "memory read bandwidth" "$tmp/out.txt" || { echo "no bandwidth line"; cat "$tmp/out.txt"; exit 1; }
grep -q "^cpu_simd " "$tmp/out.txt" || { echo "no cpu_simd row"; cat "$tmp/out.txt"; exit 1; }

# JSON: top-level bandwidth and one row per backend x shape x M (+ fp32_dense rows), required keys.
for key in '"memory_read_gbps"' '"rows"' '"backend"' '"m"' '"k"' '"n"' '"bits"' '"group_size"' '"us"' \
           '"gflops"' '"weight_gbps"'; do
  grep -q "$key" "$tmp/bench.json" || { echo "JSON lacks $key"; cat "$tmp/bench.json"; exit 1; }
done
rows=$(grep -c '"backend"' "$tmp/bench.json")
[ "$rows" -eq 18 ] || { echo "expected 18 rows (3 backends x 2 shapes x 3 M), got $rows"; exit 1; }

# SVG: well-formed XML (xmllint when installed), root <svg>, labels and a polyline per series.
grep -q "<svg" <<<"$(head -c 200 "$tmp/bench.svg")" || { echo "not an SVG"; exit 1; }
if command -v xmllint >/dev/null 2>&1; then
  xmllint --noout "$tmp/bench.svg"
else
  echo "xmllint absent: XML well-formedness not checked (install libxml2-utils)"
fi
grep -q "batch rows M (log scale)" "$tmp/bench.svg" || { echo "no x axis label"; exit 1; }
grep -q "GFLOP/s" "$tmp/bench.svg" || { echo "no y axis label"; exit 1; }
lines=$(grep -c "<polyline" "$tmp/bench.svg")
[ "$lines" -eq 3 ] || { echo "expected 3 series (cpu_simd, cpu_ref, fp32_dense), got $lines"; exit 1; }
for b in cpu_simd cpu_ref fp32_dense; do
  grep -q ">$b</text>" "$tmp/bench.svg" || { echo "legend lacks $b"; exit 1; }
done

# Bad input is an error with a message, not a crash.
if "$qrt" bench --shape 12by4 2>"$tmp/err.txt"; then echo "bad --shape accepted"; exit 1; fi
grep -q "expected KxN" "$tmp/err.txt" || { echo "unclear error:"; cat "$tmp/err.txt"; exit 1; }
echo "bench_plot: ok"
