#!/usr/bin/env bash
# Open-ended fuzzing, run by a developer before stopping (never by CI, whose fuzz step is a fixed
# replay: tests/fuzz/replay_and_run.sh). Each target runs for a time budget from its committed
# seeds plus a corpus kept between runs in build-asan/fuzz_corpus/. A crash stops that target and
# prints where its reproducer is: commit it under tests/data/fuzz_seeds/<target>/ and add a
# regression test next to the code it breaks.
#   scripts/fuzz.sh                 every target, 180 s each
#   scripts/fuzz.sh -t 600 fuzz_gguf fuzz_tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=180
while getopts "t:" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    *) echo "usage: scripts/fuzz.sh [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
source scripts/deps.sh
JOBS="${QRT_JOBS:-$(nproc)}"
CC=clang CXX=clang++ cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQRT_CUDA=OFF \
  -DQRT_SANITIZE=ON -DQRT_FUZZ=ON -DQRT_BUILD_BENCH=OFF >/dev/null
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
cmake --build build-asan -j "$JOBS" --target "${targets[@]}"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for t in "${targets[@]}"; do
  corpus="build-asan/fuzz_corpus/$t"
  artifacts="build-asan/fuzz_artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  echo "== $t: ${seconds} s"
  set +e
  "build-asan/tests/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "tests/data/fuzz_seeds/$t" \
    >"$artifacts/last.log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)|Test unit written' \
    "$artifacts/last.log" || true
  if [ "$status" -ne 0 ]; then failed+=("$t"); fi
done
if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]}: reproducers under build-asan/fuzz_artifacts/" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]} (${seconds} s each)"
