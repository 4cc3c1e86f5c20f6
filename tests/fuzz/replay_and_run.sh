#!/usr/bin/env bash
# The CI form of a fuzz target: the same answer on every run of the same commit.
#   1. every committed seed is replayed (a crash there is a regression);
#   2. a fixed number of mutated inputs is run from a fixed random seed, starting from an empty
#      scratch corpus, so two runs execute the same inputs in the same order.
# Open-ended, time-bounded fuzzing that looks for new crashes is scripts/fuzz.sh, not this.
# The last line names the seeds replayed, the inputs executed and the coverage reached: two runs
# of the same commit print the same line.
# Usage: replay_and_run.sh FUZZER SEEDS_DIR RUNS
set -uo pipefail
fuzzer="$(realpath "$1")" seeds="$2" runs="$3"
# A scratch folder whose path has the same length wherever this runs (not under $TMPDIR): see
# the environment note below.
scratch="$(mktemp -d /tmp/qrt-fuzz.XXXXXXXXXX)"
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus"
# The seeds are named one by one, sorted by name in the C locale: given the folder, libFuzzer
# would read it in the order the file system lists it (which differs from one clone to another),
# and that order decides which of two seeds of the same size runs first, so what it mutates.
# (An empty seed adds nothing: libFuzzer always runs the empty input.)
LC_ALL=C find "$seeds" -type f -size +0c | LC_ALL=C sort >"$scratch/seeds.txt"
seeds_count=$(wc -l <"$scratch/seeds.txt")
if [ "$seeds_count" -eq 0 ]; then echo "FAIL: no committed seeds in $seeds"; exit 1; fi
if grep -q ',' "$scratch/seeds.txt"; then echo "FAIL: a seed's path holds a comma: $(grep ',' "$scratch/seeds.txt")"; exit 1; fi
paste -sd, "$scratch/seeds.txt" | tr -d '\n' >"$scratch/seeds.list"  # no newline: it would end the last name
# Address randomization off (setarch -R), and the same addresses on every run: libFuzzer records
# the operands of the target's comparisons, pointer comparisons included, and mutates with them,
# so a stack that starts elsewhere gives other inputs. The initial stack holds the environment,
# the arguments and the working directory's name: the fuzzer runs under a fixed environment,
# from the scratch folder, as ./target (a link), with every path it is given inside that folder.
# (Before that, fuzz_config reached 1181 or 1188 edges depending on the folder it was started
# from; now every start gives the same count.)
norandom=()
if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); else
  echo "note: setarch -R is not available here: the inputs after the seeds may differ between runs"; fi
ln -s "$fuzzer" "$scratch/target"
fixed_env=(PATH=/usr/bin:/bin HOME="$scratch" LC_ALL=C)
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do [ -n "${!v:-}" ] && fixed_env+=("$v=${!v}"); done
# -seed fixes libFuzzer's random generator; -runs bounds the work by count, never by the clock.
# -reload=0: by default libFuzzer rereads its output corpus every second and runs what it finds
# there that it no longer holds, which makes the inputs it executes depend on the clock.
# Crash reproducers go to the scratch folder, never into the source tree.
(cd "$scratch" && env -i "${fixed_env[@]}" "${norandom[@]}" ./target -seed=1 -runs="$runs" -reload=0 -rss_limit_mb=2048 \
  -timeout=60 -print_final_stats=1 -artifact_prefix="$scratch/" -seed_inputs="@$scratch/seeds.list" "$scratch/corpus" \
  >"$scratch/log" 2>&1)
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
loaded=$(sed -n 's/^INFO: seed corpus: files: \([0-9]*\).*/\1/p' "$scratch/log")
if [ "$loaded" != "$seeds_count" ]; then
  cat "$scratch/log"; echo "FAIL: libFuzzer read ${loaded:-no} seed files, $seeds_count are committed"; exit 1
fi
executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/log")
done_line=$(grep -o 'DONE *cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$scratch/log" | tail -n 1)
cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
echo "$(basename "$fuzzer"): ${seeds_count} committed seeds replayed, ${executed} inputs executed (seed 1, ${runs} runs)," \
  "coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?}; no crash"
