#!/usr/bin/env bash
# The CI form of a fuzz target: the same answer on every run of the same commit.
#   1. every committed seed is replayed (a crash there is a regression);
#   2. a fixed number of mutated inputs is run from a fixed random seed, starting from an empty
#      scratch corpus, so two runs execute the same inputs in the same order.
# Open-ended, time-bounded fuzzing that looks for new crashes is scripts/fuzz.sh, not this.
# Usage: replay_and_run.sh FUZZER SEEDS_DIR RUNS
set -uo pipefail
fuzzer="$1" seeds="$2" runs="$3"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus"
# -seed fixes libFuzzer's random generator; -runs bounds the work by count, never by the clock.
# Crash reproducers go to the scratch folder, never into the source tree.
"$fuzzer" -seed=1 -runs="$runs" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
  -artifact_prefix="$scratch/" "$scratch/corpus" "$seeds" >"$scratch/log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
  cat "$scratch/log"
  for f in "$scratch"/crash-* "$scratch"/leak-* "$scratch"/timeout-* "$scratch"/oom-*; do
    [ -e "$f" ] || continue
    echo "reproducer (base64; commit it under $seeds and add a regression test):"
    base64 -w 0 "$f"; echo
  done
  exit "$status"
fi
seeds_count=$(find "$seeds" -type f | wc -l)
executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/log")
echo "$(basename "$fuzzer"): ${seeds_count} committed seeds replayed, ${executed} inputs executed (seed 1, ${runs} runs), no crash"
