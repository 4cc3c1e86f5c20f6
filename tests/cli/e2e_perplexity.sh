#!/usr/bin/env bash
# End to end: `qrt perplexity` on the default GGUF over a short slice of the committed text; the
# default backend and the reference backend agree (docs/QUALITY.md has the full-text numbers).
#   bash tests/cli/e2e_perplexity.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_perplexity.sh <qrt> <tests/data>}"
DATA="${2:?usage: e2e_perplexity.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
head -c 2000 "$DATA/text/kjv_ruth_jonah.txt" >"$tmp/slice.txt"

ppl_of() {  # ppl_of LABEL qrt-args... ; prints the PPL value
  timeout 120 "$QRT" perplexity -m "$MODEL" -f "$tmp/slice.txt" --ctx 64 --chunks 4 -t 2 "$@" \
    >"$tmp/out" 2>"$tmp/err" || { echo "exit $?: $(tail -n 1 "$tmp/err")" >&2; return 1; }
  grep -q 'tokens/s' "$tmp/err" || echo "no tokens/s line" >&2
  grep -ho 'PPL = [0-9.]*' "$tmp/out" "$tmp/err" | head -n 1 | awk '{print $3}'
}
p_auto=$(ppl_of) || bad "perplexity (auto) failed"
p_ref=$(ppl_of --backend cpu_ref) || bad "perplexity (cpu_ref) failed"
echo "ctx 64, 4 windows of the first 2000 bytes: PPL auto $p_auto, cpu_ref $p_ref"
awk -v p="$p_auto" 'BEGIN { exit !(p > 1 && p < 100) }' || bad "PPL (auto) '$p_auto' not in (1, 100)"
awk -v a="$p_auto" -v r="$p_ref" 'BEGIN { d = (a - r) / r; if (d < 0) d = -d; exit !(d < 0.05) }' ||
  bad "PPL auto $p_auto and cpu_ref $p_ref differ by more than 5 %"

# Bad values of --ctx give one clear line.
timeout 60 "$QRT" perplexity -m "$MODEL" -f "$tmp/slice.txt" --ctx 100000 >"$tmp/out" 2>"$tmp/err"
rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ] && grep -q 'ctx' "$tmp/err"; } || bad "--ctx larger than the text: exit $rc, $(head -n 1 "$tmp/err")"

[ "$fail" -eq 0 ] && echo "OK: e2e_perplexity"
exit "$fail"
