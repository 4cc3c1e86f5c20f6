#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (the device tool), from the repository root, in one call: unpacks the
# -dev packages carried in .gpu-deps/ (scripts/gpu-deps.sh, run beforehand on the dev machine),
# builds the CUDA targets (sm_90 only unless QRT_CUDA_ARCHS says otherwise), runs the GPU tests (one
# short case also under compute-sanitizer), `qrt plan --json` against `qrt run -v` on the GPU
# (tests/cli/e2e_plan_vs_run.sh), decode and prompt speed of the default model (SmolLM2, rebuilt
# to its 30 blocks from the carried 8, tools/repeat_gguf_blocks.py) next to llama.cpp's llama-bench
# built with CUDA from the carried sources (.gpu-llama, in the background while qrt builds;
# bench/gpu_decode_vs_llamacpp.sh), the GPU GEMM benchmark with the torch peers
# (bench/peers/gemm_peers.py) in the same run, GGUF-like weights (4-bit, group 32, float zero
# points) through the plan against fp16 cuBLAS (qrt bench, M = 1 and 512), decode tokens/s of a random Llama-2-7B-shaped GPTQ
# model next to bench/peers/hf_decode.py, that model's load and CUDA engine build (bench/load_bench), `qrt serve --device cuda` under 32 streaming clients and
# one on that model (bench/serve_load.sh), Nsight Compute's view of cuda_marlin's kernel at M =
# 16-128 (tools/gpu_int4_profile.sh), then merges everything into one JSON with a `summary`
# ($OUT/<gpu>-<date>.json, copied to bench/results/) and prints one table last.
# Env: OUT (results folder, default ./gpu-out), GPU_CHECK_BUDGET (seconds, default 470): stages that
# would not fit are skipped and say so. GPU_CHECK_LLAMACPP=0 skips the llama.cpp build.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
LOGS=/tmp/qrt-logs
RAW=/tmp/qrt-raw   # intermediate JSON (only 8 files come back from $OUT: the merged result holds them)
mkdir -p "$LOGS" "$RAW"
BUDGET=${GPU_CHECK_BUDGET:-470}
START=$SECONDS
LOG=$OUT/gpu-check.log
: > "$LOG"
left() { echo $((BUDGET - (SECONDS - START))); }
# GPU_CHECK_SKIP=tests,smollm2,kept,gemm,int4,gguf,decode7b,load,serve,tune,profile,hf: stages left out of a call that is about
# something else. GPU_CHECK_TEST_FILTER: a gtest filter for the GPU tests of a kernel-only call.
# GPU_CHECK_PROFILE=wgmma: the profile stage looks at cuda_marlin's wgmma kernel instead.
skip() { [[ ",${GPU_CHECK_SKIP:-}," == *",$1,"* ]] && { note "skipped: GPU_CHECK_SKIP names $1"; return 0; }; return 1; }
stage() { echo; echo "=== [$((SECONDS - START)) s] $*" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG"; }

# ---- dependencies: .deb files unpacked under /tmp/qrt-deps (never into /) ----
stage "deps"
DEPS=/tmp/qrt-deps
mkdir -p "$DEPS"
for f in .gpu-deps/*.deb; do [ -f "$f" ] && dpkg -x "$f" "$DEPS"; done
MA=x86_64-linux-gnu
export LD_LIBRARY_PATH=$DEPS/usr/lib/$MA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CMAKE_PREFIX_PATH=$DEPS/usr
# cpp-httplib is found through pkg-config: its .pc files (and those it requires) come from the
# unpacked packages, their /usr paths rewritten under $DEPS by the sysroot variable.
export PKG_CONFIG_PATH=$DEPS/usr/lib/$MA/pkgconfig:$DEPS/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$DEPS
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$LOG"
{ nvcc --version | tail -2; cmake --version | head -1; python3 -c 'import torch; print("torch", torch.__version__)'; } 2>&1 | tee -a "$LOG"

GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)

# ---- llama.cpp CUDA (the decode peer), built from the carried sources while qrt builds ----
# At lower priority than qrt's build, in its own process group (job control on for the one
# launch: its group id is its pid, so the whole build stops if the budget runs out). Only
# llama-bench is built.
LLAMA_SRC=.gpu-llama/llama-cpp-src.tar.xz
LLAMA_DIR=/tmp/qrt-llama
LLAMA_BENCH=$LLAMA_DIR/build/bin/llama-bench
LLAMA_PID=
# A llama-bench built on the dev machine (scripts/gpu-deps.sh with QRT_GPU_DEPS_LLAMA_BENCH=1: static,
# sm_90) saves the ~4 minutes its build takes here, where it shares the cores with qrt's build.
LLAMA_PREBUILT=.gpu-llama/llama-bench-sm90.xz
if [ -f "$LLAMA_PREBUILT" ] && [ "${GPU_CHECK_LLAMACPP:-1}" = 1 ] && [ ! -x "$LLAMA_BENCH" ]; then
  mkdir -p "$(dirname "$LLAMA_BENCH")"
  if xz -dc "$LLAMA_PREBUILT" > "$LLAMA_BENCH.tmp" && chmod +x "$LLAMA_BENCH.tmp" &&
     "$LLAMA_BENCH.tmp" --help > /dev/null 2>&1; then
    mv "$LLAMA_BENCH.tmp" "$LLAMA_BENCH"
    note "llama.cpp: the carried llama-bench ($LLAMA_PREBUILT) runs here"
  else
    rm -f "$LLAMA_BENCH.tmp"
    note "llama.cpp: the carried llama-bench does not run here: building it from the sources"
  fi
fi
if [ -f "$LLAMA_SRC" ] && [ "${GPU_CHECK_LLAMACPP:-1}" = 1 ] && [ ! -x "$LLAMA_BENCH" ]; then
  set -m
  nice -n 10 bash -c '
    set -e
    # A build stopped by an earlier call on this (still warm) machine goes on where it stopped.
    if [ ! -f "$1/build/CMakeCache.txt" ]; then
      rm -rf "$1" && mkdir -p "$1" && tar -xJf "$2" -C "$1"
      cmake -S "$1/llama.cpp" -B "$1/build" $3 -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DGGML_CUDA_NCCL=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
    fi
    cmake --build "$1/build" --target llama-bench -j"$(nproc)"' _ "$LLAMA_DIR" "$LLAMA_SRC" "${GEN[*]}" \
    > "$LOGS/llama-build.log" 2>&1 &
  LLAMA_PID=$!
  set +m
  trap 'kill -- -"$LLAMA_PID" 2>/dev/null' EXIT  # never outlives the check
  note "llama.cpp: building llama-bench (CUDA, sm_90) in the background"
elif [ -x "$LLAMA_BENCH" ]; then
  note "llama.cpp: $LLAMA_BENCH already built"
else
  note "llama.cpp: no $LLAMA_SRC (scripts/gpu-deps.sh) or GPU_CHECK_LLAMACPP=0: no llama.cpp figures"
fi
# The default model's first 8 blocks travel xz-compressed (scripts/gpu-deps.sh), and at its 30
# blocks (copies of the carried 8: same shapes, types and tokenizer).
SMOL8=/tmp/qrt-smollm2-8-blocks.gguf
SMOL=/tmp/qrt-smollm2-30-blocks.gguf
if [ -f .gpu-model/smollm2-8-blocks.gguf.xz ] && [ ! -f "$SMOL8" ]; then
  xz -dc .gpu-model/smollm2-8-blocks.gguf.xz > "$SMOL8.tmp" && mv "$SMOL8.tmp" "$SMOL8"
fi
if [ -f "$SMOL8" ] && [ ! -f "$SMOL" ]; then
  python3 tools/repeat_gguf_blocks.py "$SMOL8" "$SMOL" --blocks 30 2>&1 | tee -a "$LOG"
fi

# ---- "speed kept": an earlier commit's gpu_decode_bench, built from its carried sources ----
# .gpu-base/base.tar.xz (`git archive COMMIT | xz`, with .gpu-base/COMMIT naming it) is built in the
# background like llama.cpp; the decode stage below then times both binaries alternating.
BASE_SRC=.gpu-base/base.tar.xz
BASE_DIR=/tmp/qrt-base
BASE_BENCH=$BASE_DIR/build/bench/gpu_decode_bench
BASE_PID=
if [ -f "$BASE_SRC" ] && [ ! -x "$BASE_BENCH" ]; then
  set -m
  nice -n 10 bash -c '
    set -e
    rm -rf "$1" && mkdir -p "$1/src" && tar -xJf "$2" -C "$1/src"
    cmake -S "$1/src" -B "$1/build" $3 -DCMAKE_BUILD_TYPE=Release -DQRT_CUDA=ON -DQRT_CUDA_ARCHS=90 \
      -DCMAKE_PREFIX_PATH="$4/usr" -DGTest_DIR="$4/usr/lib/x86_64-linux-gnu/cmake/GTest" \
      -Dbenchmark_DIR="$4/usr/lib/x86_64-linux-gnu/cmake/benchmark" -Dfmt_DIR="$4/usr/lib/x86_64-linux-gnu/cmake/fmt" \
      -Dnlohmann_json_DIR="$4/usr/share/cmake/nlohmann_json" -DCLI11_DIR="$4/usr/share/cmake/CLI11" \
      -DCMAKE_CXX_FLAGS="-isystem $4/usr/include"
    cmake --build "$1/build" --target gpu_int4_bench -j"$(nproc)" || true
    cmake --build "$1/build" --target gpu_decode_bench -j"$(nproc)"' _ "$BASE_DIR" "$BASE_SRC" "${GEN[*]}" "$DEPS" \
    > "$LOGS/base-build.log" 2>&1 &
  BASE_PID=$!
  set +m
  trap 'kill -- -"$LLAMA_PID" 2>/dev/null; kill -- -"$BASE_PID" 2>/dev/null' EXIT
  note "base ($(cat .gpu-base/COMMIT 2>/dev/null || echo '?')): building gpu_decode_bench in the background"
fi

# ---- the random Llama-2-7B-shaped GPTQ model, written while the build runs ----
MODEL=/tmp/qrt-llama2-7b-gptq
MODEL_PID=
if [ -f bench/gpu_decode_bench.cpp ] && ! { [[ ",${GPU_CHECK_SKIP:-}," == *",decode7b,"* ]] &&
                                             [[ ",${GPU_CHECK_SKIP:-}," == *",serve,"* ]] &&
                                             [[ ",${GPU_CHECK_SKIP:-}," == *",tune,"* ]]; }; then
  PYTHONUNBUFFERED=1 python3 tools/make_random_model.py "$MODEL" --preset llama2-7b --bits 4 --group 128 \
    > "$LOGS/decode.log" 2>&1 &
  MODEL_PID=$!
fi

# ---- build ----
stage "build (sm_${QRT_CUDA_ARCHS:-90})"
cmake -S . -B build-gpu "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DQRT_CUDA=ON -DQRT_CUDA_ARCHS="${QRT_CUDA_ARCHS:-90}" \
  -DCMAKE_PREFIX_PATH="$DEPS/usr" -DGTest_DIR="$DEPS/usr/lib/$MA/cmake/GTest" \
  -Dbenchmark_DIR="$DEPS/usr/lib/$MA/cmake/benchmark" -Dfmt_DIR="$DEPS/usr/lib/$MA/cmake/fmt" \
  -Dnlohmann_json_DIR="$DEPS/usr/share/cmake/nlohmann_json" -DCLI11_DIR="$DEPS/usr/share/cmake/CLI11" \
  -DCMAKE_CXX_FLAGS="-isystem $DEPS/usr/include" >> "$LOG" 2>&1 || { note "cmake configure failed"; tail -30 "$LOG"; }
TARGETS=(test_backends gpu_gemm_bench gpu_int4_bench qrt_cli)
[ -f bench/gpu_decode_bench.cpp ] && TARGETS+=(gpu_decode_bench)
[ -f bench/load_bench.cpp ] && TARGETS+=(load_bench)
# GPU_CHECK_TARGETS="qrt_cli": a short call that builds only the CLI; the stages whose programs
# are not built say so, and the torch peers are skipped (a tune + bench re-check). The serve stage
# alone (GPU_CHECK_TARGETS=qrt_cli, every other stage skipped) wants GPU_CHECK_BUDGET >= 300: a cold
# build of the CLI takes about 70 s on the 16-core GPU machine and the stage starts only with 150 s left.
PEERS=1
if [ -n "${GPU_CHECK_TARGETS:-}" ]; then read -r -a TARGETS <<< "$GPU_CHECK_TARGETS"; PEERS=0; fi
# GPU_CHECK_PREBUILT=1: binaries built on the development machine from this very source tree
# (scripts/gpu-prebuilt.sh, carried in .gpu-bin) are unpacked instead of built, where their
# libraries resolve here; the other targets build as usual.
if [ "${GPU_CHECK_PREBUILT:-0}" = 1 ] && [ -f .gpu-bin/SOURCES ]; then
  if [ "$(bash scripts/gpu-source-hash.sh)" != "$(cat .gpu-bin/SOURCES)" ]; then
    note "prebuilt: .gpu-bin was built from another source tree: building everything"
  else
    for f in $(find .gpu-bin -name '*.xz' | sort); do
      bin=${f#.gpu-bin/}; bin=${bin%.xz}
      case "$bin" in tests/test_backends) t=test_backends ;; qrt) t=qrt_cli ;; bench/*) t=${bin#bench/} ;; *) continue ;; esac
      mkdir -p "build-gpu/$(dirname "$bin")"
      if xz -dc "$f" > "build-gpu/$bin.tmp" && chmod +x "build-gpu/$bin.tmp" &&
         ! ldd "build-gpu/$bin.tmp" 2>&1 | grep -q 'not found'; then
        mv "build-gpu/$bin.tmp" "build-gpu/$bin"
        TARGETS=($(printf '%s\n' "${TARGETS[@]}" | grep -vx "$t" || true))
        note "prebuilt: build-gpu/$bin ($(cat .gpu-bin/NVCC 2>/dev/null))"
      else
        rm -f "build-gpu/$bin.tmp"; note "prebuilt: build-gpu/$bin does not load here: building it"
      fi
    done
  fi
fi
# Time kept back for the stages after the build: the GPU tests' share only where they are built.
RESERVE=100; [[ " ${TARGETS[*]} " == *" test_backends "* ]] && RESERVE=200
BUILD_RC=0
if [ ${#TARGETS[@]} -gt 0 ]; then
  timeout $(( $(left) - RESERVE > 60 ? $(left) - RESERVE : 60 )) cmake --build build-gpu -j"$(nproc)" --target "${TARGETS[@]}" -- -k 0 \
    > "$LOGS/build.log" 2>&1
  BUILD_RC=$?
else
  : > "$LOGS/build.log"
fi
note "build rc=$BUILD_RC ($(grep -c 'error' "$LOGS/build.log") lines with 'error')"
[ $BUILD_RC -ne 0 ] && { grep -m 20 -B2 -A6 'error' "$LOGS/build.log"; tail -5 "$LOGS/build.log"; } | tee -a "$LOG"

# ---- tests ----
stage "GPU tests"
TESTS_RC=-1
# The default model's first 8 blocks (scripts/gpu-deps.sh; the whole GGUF does not travel): the
# CPU-vs-GPU engine logits test runs on it.
[ -f "$SMOL8" ] && export QRT_DEFAULT_MODEL=$SMOL8
note "QRT_DEFAULT_MODEL=${QRT_DEFAULT_MODEL:-unset}"
if skip tests; then
  :
elif [ -x build-gpu/tests/test_backends ]; then
  timeout "${GPU_CHECK_TEST_TIMEOUT:-180}" build-gpu/tests/test_backends --gtest_brief=0 \
    ${GPU_CHECK_TEST_FILTER:+--gtest_filter="$GPU_CHECK_TEST_FILTER"} > "$OUT/tests.log" 2>&1
  TESTS_RC=$?
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests? ran|FAILED TEST' "$OUT/tests.log" | tail -25 | tee -a "$LOG"
  grep -B3 -A12 'Failure' "$OUT/tests.log" | head -80 | tee -a "$LOG"
  # A kernel fault (illegal address, a trap) is sticky: every later CUDA call of the process
  # fails, and a crash ends the run, so one bad kernel can hide the state of all the others. On
  # a failed run each GPU suite runs again in a process of its own, to say which ones fail.
  if [ "$TESTS_RC" -ne 0 ] && [ "$(left)" -gt 150 ]; then
    stage "GPU tests again, one process per suite (the first run failed, rc=$TESTS_RC)"
    : > "$OUT/tests-by-suite.log"
    for suite in $(build-gpu/tests/test_backends --gtest_list_tests | grep -E '^Cuda[A-Za-z0-9_]*\.$' | tr -d .); do
      [ "$(left)" -gt 120 ] || { note "suites not rerun: $(left) s left"; break; }
      timeout 60 build-gpu/tests/test_backends --gtest_filter="$suite.*" --gtest_brief=1 >> "$OUT/tests-by-suite.log" 2>&1
      rc=$?; [ $rc -eq 0 ] || note "suite $suite: rc=$rc"
    done
    grep -E '^\[  FAILED  \] [A-Za-z0-9_]+\.[A-Za-z0-9_/]+' "$OUT/tests-by-suite.log" | sort -u | head -40 | tee -a "$LOG"
  fi
  stage "compute-sanitizer (one short case)"
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_backends \
    --gtest_filter='CudaDequant.ForcedPathsAgreeAndGraphReplayMatches:CudaFp8.GraphReplayMatchesEager:*.SanitizerShortSet' \
    >> "$OUT/tests.log" 2>&1
  SAN_RC=$?
  note "compute-sanitizer rc=$SAN_RC"; grep -E 'ERROR SUMMARY|Invalid|PASSED|FAILED' "$OUT/tests.log" | tail -5 | tee -a "$LOG"
else
  note "test_backends was not built"
fi

# ---- decode and prompt of the default model: qrt and llama.cpp CUDA, same GPU, same call ----
stage "decode: SmolLM2 30 blocks (Q4_1), qrt vs llama.cpp CUDA"
if ! skip smollm2 && [ -x build-gpu/bench/gpu_decode_bench ] && [ -f "$SMOL" ] && [ "$(left)" -gt 90 ]; then
  if [ -n "$LLAMA_PID" ]; then
    while kill -0 "$LLAMA_PID" 2>/dev/null && [ "$(left)" -gt 150 ]; do sleep 2; done
    if kill -0 "$LLAMA_PID" 2>/dev/null; then
      note "llama.cpp build still running with $(left) s left: stopped"; kill -- -"$LLAMA_PID" 2>/dev/null
    fi
    wait "$LLAMA_PID" 2>/dev/null; note "llama.cpp build rc=$? ($(tail -1 "$LOGS/llama-build.log" | cut -c1-120))"
  fi
  if [ -x "$LLAMA_BENCH" ]; then
    timeout $(( $(left) > 150 ? 120 : $(left) - 30 )) bash bench/gpu_decode_vs_llamacpp.sh build-gpu/bench/gpu_decode_bench \
      "$LLAMA_BENCH" "$SMOL" --reps 3 --json "$RAW/smollm2-vs-llamacpp.json" > "$LOGS/smollm2-vs-llamacpp.log" 2>&1
    note "gpu_decode_vs_llamacpp rc=$?"; tail -4 "$LOGS/smollm2-vs-llamacpp.log" | tee -a "$LOG"
  else
    note "no llama-bench: qrt alone"; tail -3 "$LOGS/llama-build.log" 2>/dev/null | tee -a "$LOG"
  fi
  # Fused decode ops against the unfused kernels: launches per step, tokens/s, the per-op profile.
  if [ "$(left)" -gt 60 ]; then
    # GEMV_BULK=0: the default takes cuda_gemv's bulk-copy kernel for SmolLM2's small layers; the
    # second engine runs every layer on the register-ring one.
    UNFUSED=1 GEMV_BULK=0 PROMPT=128 NEW=128 timeout 80 build-gpu/bench/gpu_decode_bench "$SMOL" "$RAW/qrt-decode-smollm2.json" \
      > "$LOGS/decode-smollm2.log" 2>&1
    note "gpu_decode_bench (fused and unfused) rc=$?"
    grep -E 'decode ops.*: engine|tokens/s:|greedy tokens equal|decode step launches' "$LOGS/decode-smollm2.log" | tee -a "$LOG"
  fi
else
  note "skipped (gpu_decode_bench or $SMOL missing, or $(left) s left)"
fi

# ---- speed kept: this tree's decode against the base commit's, same GPU, alternating ----
stage "speed kept: SmolLM2 decode, this tree vs $(cat .gpu-base/COMMIT 2>/dev/null || echo 'no base')"
if ! skip kept && [ -n "$BASE_PID" ] && [ -x build-gpu/bench/gpu_decode_bench ] && [ -f "$SMOL" ] && [ "$(left)" -gt 150 ]; then
  while kill -0 "$BASE_PID" 2>/dev/null && [ "$(left)" -gt 150 ]; do sleep 2; done
  kill -0 "$BASE_PID" 2>/dev/null && { note "base build still running: stopped"; kill -- -"$BASE_PID" 2>/dev/null; }
  wait "$BASE_PID" 2>/dev/null; note "base build rc=$? ($(tail -1 "$LOGS/base-build.log" | cut -c1-100))"
  if [ -x "$BASE_BENCH" ]; then
    for r in 1 2 3; do
      for who in new base; do
        bin=build-gpu/bench/gpu_decode_bench; [ $who = base ] && bin=$BASE_BENCH
        PROMPT=1 NEW=128 timeout 40 "$bin" "$SMOL" "$RAW/kept-$who-$r.json" > "$LOGS/kept-$who-$r.log" 2>&1
      done
    done
    python3 - "$RAW" <<'PY' | tee -a "$LOG"
import json, statistics, sys
raw = sys.argv[1]
def tok(who):
    v = []
    for r in (1, 2, 3):
        try: v.append(json.load(open(f'{raw}/kept-{who}-{r}.json'))['decode_tok_s'])
        except Exception: pass
    return v
n, b = tok('new'), tok('base')
out = {'new_decode_tok_s': n, 'base_decode_tok_s': b}
if n and b: out['ratio_of_medians'] = statistics.median(n) / statistics.median(b)
json.dump(out, open(f'{raw}/speed-kept.json', 'w'))
print('speed kept (SmolLM2 30 blocks, decode 128, tok/s):', out)
PY
  fi
else
  note "skipped (no base, or $(left) s left)"
fi

# ---- plan vs run on the GPU: `qrt plan --json` and `qrt run -v` agree layer by layer ----
stage "plan vs run (cuda:0, same config file and tuning cache)"
if [ -x build-gpu/qrt ] && [ -n "${QRT_DEFAULT_MODEL:-}" ]; then
  timeout 200 bash tests/cli/e2e_plan_vs_run.sh build-gpu/qrt tests/data --device cuda:0 2>&1 | tail -15 | tee -a "$LOG"
else
  note "skipped (qrt not built or no QRT_DEFAULT_MODEL)"
fi

# ---- GEMM: qrt and the torch peers, same call ----
stage "GEMM benchmark (qrt)"
if ! skip gemm && [ -x build-gpu/bench/gpu_gemm_bench ]; then
  MS=1,16,64,256,4096 timeout 150 build-gpu/bench/gpu_gemm_bench "$RAW/qrt-gemm.json" > "$LOGS/gemm.log" 2>&1
  grep -m 5 -i 'warning' "$LOGS/gemm.log" | tee -a "$LOG"
  tail -8 "$LOGS/gemm.log" | cut -c1-300 | tee -a "$LOG"
fi
stage "GEMM peers (torch)"
[ "$PEERS" = 1 ] && ! skip gemm && OUT=$RAW MS=1,16,64,256,4096 PYTHONUNBUFFERED=1 timeout 150 python3 bench/peers/gemm_peers.py fp16,fp8 gemm 2>&1 \
  | tail -12 | tee -a "$LOG"

# ---- int4 weight-only kernels (cuda_marlin / cuda_gemv) with tinygemm from the same call ----
stage "int4 peer (torch tinygemm, M = 1..128)"
[ "$PEERS" = 1 ] && ! skip int4 && OUT=$RAW MS=1,16,32,64,128 PYTHONUNBUFFERED=1 timeout 90 python3 bench/peers/gemm_peers.py tinygemm tinygemm 2>&1 \
  | tail -7 | tee -a "$LOG"
TG_M1=$(python3 -c "import json,sys; r=json.load(open('$RAW/peers-tinygemm.json'))['rows']; print(sum(x['tinygemm_us'] for x in r if x['M']==1))" 2>/dev/null)
stage "int4 benchmark (qrt cuda_marlin / cuda_gemv)"
if ! skip int4 && [ -x build-gpu/bench/gpu_int4_bench ]; then
  timeout 150 build-gpu/bench/gpu_int4_bench --json "$RAW/qrt-int4.json" ${TG_M1:+--tinygemm-m1-us $TG_M1} \
    > "$LOGS/int4.log" 2>&1
  grep -E 'MISMATCH|wgmma kernel' "$LOGS/int4.log" | head -10 | tee -a "$LOG"
  tail -16 "$LOGS/int4.log" | tee -a "$LOG"
fi
# The same kernels' speed against the base commit's, per M, the two binaries alternating (the base
# build is waited for at most 60 s): the best wgmma / mma.sync candidate per shape, summed.
BASE_INT4=$BASE_DIR/build/bench/gpu_int4_bench
stage "int4 kept: this tree vs $(cat .gpu-base/COMMIT 2>/dev/null || echo 'no base'), M = 16 .. 128"
if ! skip int4 && [ -x build-gpu/bench/gpu_int4_bench ] && [ "$(left)" -gt 200 ]; then
  for _ in $(seq 60); do [ -x "$BASE_INT4" ] && break; [ -n "$BASE_PID" ] && kill -0 "$BASE_PID" 2>/dev/null || break; sleep 1; done
  if [ -x "$BASE_INT4" ]; then
    for rep in 1 2; do
      for m in 16 32 64 128; do
        [ "$(left)" -gt 60 ] || break 2  # the stages after this one keep their time
        timeout 40 build-gpu/bench/gpu_int4_bench --m $m --json "$RAW/kept-new-m$m-$rep.json" > /dev/null 2>&1
        timeout 40 "$BASE_INT4" --m $m --json "$RAW/kept-base-m$m-$rep.json" > /dev/null 2>&1
      done
    done
    python3 - "$RAW" <<'PY' 2>&1 | tee -a "$LOG"
import glob, json, os, sys
raw = sys.argv[1]
def cands(side, m):
    # shape -> candidate -> the lower of the two runs' times
    out = {}
    for rep in (1, 2):
        try: rows = json.load(open(f"{raw}/kept-{side}-m{m}-{rep}.json"))["rows"]
        except Exception: continue
        for r in rows:
            for k, v in r["candidates"].items():
                if k.startswith(("wg_", "qmm_")) and v > 0:
                    d = out.setdefault((r["k"], r["n"]), {})
                    d[k] = min(v, d.get(k, v))
    return out
print("M     base_us    new_us   base/new   (best of the candidates both binaries time, per shape, summed; lower of 2 runs)")
for m in (16, 32, 64, 128):
    b, n = cands("base", m), cands("new", m)
    tb = tn = 0.0
    for shape in b:
        common = set(b[shape]) & set(n.get(shape, {}))
        if not common: continue
        tb += min(b[shape][k] for k in common)
        tn += min(n[shape][k] for k in common)
    if tb and tn:
        print(f"{m:<4} {tb:9.1f} {tn:9.1f} {tb / tn:9.3f}")
PY
  else
    note "skipped: the base gpu_int4_bench is not built (see base-build.log)"
  fi
else
  note "skipped (GPU_CHECK_SKIP, not built, or $(left) s left)"
fi

# ---- GGUF-like weights on the fast paths: 4-bit, group 32, float zero points (what Q4_1 is, and
# what Q4_K becomes once its 6-bit sub-block scales and mins are decoded at load), the four
# Llama-2-7B linears, the plan's choice against fp16 cuBLAS in the same process (qrt bench) ----
stage "gguf: Q4_1 / Q4_K-like weights, the plan vs fp16 cuBLAS, M = 1 and 512"
if ! skip gguf && [ -x build-gpu/qrt ] && [ "$(left)" -gt 60 ]; then
  timeout 90 build-gpu/qrt bench --device cuda --shape 4096x12288,4096x4096,4096x22016,11008x4096 --bits 4 \
    --group-size 32 --zero float --batch 1,512 --backends plan --json "$RAW/qrt-gguf-like.json" \
    > "$LOGS/gguf-like.log" 2>&1
  note "qrt bench rc=$?"; grep -E '^(fp16_cublas|plan) ' "$LOGS/gguf-like.log" | tee -a "$LOG"
else
  note "skipped (GPU_CHECK_SKIP, qrt not built, or $(left) s left)"
fi

# The random model's writer (started before the build): waited for by the first stage that needs it.
wait_model() {
  if [ -n "$MODEL_PID" ]; then
    while kill -0 $MODEL_PID 2>/dev/null && [ "$(left)" -gt 100 ]; do sleep 1; done
    kill -0 $MODEL_PID 2>/dev/null && { note "model generation still running: stopped"; kill $MODEL_PID; }
    wait $MODEL_PID 2>/dev/null; note "$(tail -1 "$LOGS/decode.log")"
    MODEL_PID=
  fi
}

# ---- decode ----
stage "decode: random Llama-2-7B GPTQ 4-bit"
# One run takes 40-60 s on an H100 (20-25 s of it the engine build): less than 90 s cut it short.
if ! skip decode7b && [ "$(left)" -gt 100 ]; then
  wait_model
  if [ -x build-gpu/bench/gpu_decode_bench ]; then
    timeout $(( $(left) > 190 ? $(left) - 100 : 90 )) build-gpu/bench/gpu_decode_bench "$MODEL" "$RAW/qrt-decode.json" \
      >> "$LOGS/decode.log" 2>&1
    note "gpu_decode_bench rc=$?"; sed -n '/decode step by op/,/^  total/p' "$LOGS/decode.log" | tee -a "$LOG"
    grep -E 'decode ops.*: engine|tokens/s:|greedy tokens equal' "$LOGS/decode.log" | tee -a "$LOG"
    # Then every norm and SiLU x up in the projections (the norms from the producers' sums of
    # squares), a process of its own: the 7B default leaves them out (hidden 4096).
    if [ "$(left)" -gt 140 ]; then
      QRT_CUDA_FUSED_PROJECTIONS=sumsq timeout 70 build-gpu/bench/gpu_decode_bench "$MODEL" "$RAW/qrt-decode-sumsq.json" \
        > "$LOGS/decode-sumsq.log" 2>&1
      note "gpu_decode_bench (QRT_CUDA_FUSED_PROJECTIONS=sumsq) rc=$?"
      grep -E 'tokens/s:|graph step' "$LOGS/decode-sumsq.log" | tee -a "$LOG"
    fi
  else
    note "gpu_decode_bench not built: no qrt decode figure"
  fi
else
  note "skipped: $(left) s left"
fi

# ---- from checkpoint to engine: the random 7B model's setup, load_model and CUDA make_engine,
# next to reading its files from the page cache (bench/load_bench, one repetition) ----
stage "load: random Llama-2-7B GPTQ 4-bit, checkpoint to CUDA engine (bench/load_bench)"
if ! skip load && [ -x build-gpu/bench/load_bench ] && [ "$(left)" -gt 70 ]; then
  wait_model
  timeout 60 build-gpu/bench/load_bench "$MODEL" cuda:0 --reps 1 --json "$RAW/qrt-load.json" > "$LOGS/load.log" 2>&1
  note "load_bench rc=$?"; grep -E '^median|engine build: the blocks' "$LOGS/load.log" | tee -a "$LOG"
else
  note "skipped (GPU_CHECK_SKIP, load_bench not built, or $(left) s left)"
fi

# ---- qrt serve on the GPU: 32 streaming clients, then one, on the random Llama-2-7B GPTQ model ----
stage "serve: qrt serve --device cuda:0, 32 streams and 1 (random Llama-2-7B GPTQ 4-bit)"
if ! skip serve && [ -x build-gpu/qrt ] && [ "$(left)" -gt 150 ]; then
  wait_model
  if [ -f "$MODEL/config.json" ]; then
    # The random model has no tokenizer: tiny_llama2's, padded to the model's vocabulary with one
    # word per extra id, so that every token the random weights pick streams as text.
    python3 - "$MODEL" tests/data/tokenizer/tiny_llama2/tokenizer.json <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
model, src = sys.argv[1], sys.argv[2]
vocab = json.load(open(model + '/config.json'))['vocab_size']
t = json.load(open(src))
v = t['model']['vocab']
for i in range(len(v), vocab): v['\u2581w%d' % i] = i
json.dump(t, open(model + '/tokenizer.json', 'w'))
print('tokenizer: tiny_llama2 padded to %d ids' % len(v))
PY
    # Seconds per case: 20 where the budget allows, else 10; a 128-token answer per request.
    SERVE_S=$(( $(left) > 260 ? 20 : 10 ))
    timeout $(( 2 * SERVE_S + 120 )) bash bench/serve_load.sh "$MODEL" --qrt build-gpu/qrt --device cuda:0 \
      --clients 32 --duration "$SERVE_S" --max-tokens 128 --json "$RAW/serve-gpu.json" > "$LOGS/serve.log" 2>&1
    note "serve_load rc=$?"; grep -E 'backends:|streams|tokens/s|qrt serve|at 1 stream|exited|ready' "$LOGS/serve.log" | tail -8 | tee -a "$LOG"
  else
    note "no $MODEL/config.json: no serve figure"
  fi
else
  note "skipped (GPU_CHECK_SKIP, qrt not built, or $(left) s left)"
fi
# The tune stage reads the same model (when decode7b and serve did not wait for it).
[ -n "$MODEL_PID" ] && [[ ",${GPU_CHECK_SKIP:-}," != *",tune,"* ]] && wait_model

# ---- qrt tune on the GPU, then the tuned plan against the default plan (qrt bench) ----
stage "qrt tune --device cuda, then qrt bench: tuned plan vs default plan"
BATCH=1,4,16,32,64,128,256,1024,4096
if ! skip tune && [ -x build-gpu/qrt ] && [ -f "$MODEL/config.json" ] && [ "$(left)" -gt 120 ]; then
  TUNE_BUDGET=$(( $(left) > 300 ? 90 : 40 ))
  timeout $((TUNE_BUDGET + 60)) build-gpu/qrt tune "$MODEL" --device cuda --batch $BATCH --cache "$OUT/tuning-cache.json" \
    --budget $TUNE_BUDGET --repeats 9 > "$LOGS/tune.log" 2>&1
  note "qrt tune rc=$?"; grep -E 'distinct shapes|budget|error' "$LOGS/tune.log" | tee -a "$LOG"
  timeout 150 build-gpu/qrt bench "$MODEL" --device cuda --batch $BATCH --backends plan \
    --tuning-cache "$OUT/tuning-cache.json" --json "$OUT/qrt-bench-tuned.json" > "$LOGS/bench-tuned.log" 2>&1
  note "qrt bench rc=$?"; grep -A40 'tuned plan vs default plan' "$LOGS/bench-tuned.log" | tee -a "$LOG"
  grep -m3 -i 'error' "$LOGS/bench-tuned.log" | tee -a "$LOG"
else
  note "skipped (qrt or the model missing, or $(left) s left)"
fi

[ -n "$MODEL_PID" ] && kill $MODEL_PID 2>/dev/null

# ---- what bounds cuda_marlin's tensor-core kernel at M = 16-128 (Nsight Compute) ----
stage "profile: cuda_marlin's qmm_kernel under ncu (tools/gpu_int4_profile.sh)"
if ! skip profile && [ -x build-gpu/bench/gpu_int4_bench ] && command -v ncu > /dev/null && [ "$(left)" -gt 90 ]; then
  timeout $(( $(left) - 15 )) bash tools/gpu_int4_profile.sh "$RAW/ncu" ${GPU_CHECK_PROFILE:-} > "$LOGS/profile.log" 2>&1
  note "gpu_int4_profile rc=$?"; tail -120 "$LOGS/profile.log" | tee -a "$LOG"
else
  note "skipped (GPU_CHECK_SKIP, gpu_int4_bench or ncu missing, or $(left) s left)"
fi

stage "decode peer (HF transformers fp16 eager)"
if ! skip hf && [ "$(left)" -gt 40 ] && [ "$PEERS" = 1 ]; then
  # Only the fp16 eager line is needed; the int4/compile parts of the peer run past the budget.
  # Stop it once the fp16 line is printed (the int4/compile parts are not needed and take minutes).
  OUT=$RAW PYTHONUNBUFFERED=1 timeout $(( $(left) - 15 )) python3 bench/peers/hf_decode.py > "$LOGS/hf_decode.log" 2>&1 &
  HF_PID=$!
  while kill -0 $HF_PID 2>/dev/null && ! grep -q 'fp16 eager tok/s' "$LOGS/hf_decode.log"; do sleep 1; done
  kill $HF_PID 2>/dev/null; wait $HF_PID 2>/dev/null
  grep -E 'tok/s' "$LOGS/hf_decode.log" | tee -a "$LOG"
else
  note "skipped: $(left) s left"
fi

# ---- merge ----
stage "merge"
DATE=$(date -u +%Y-%m-%d)
SLUG=$(echo "${GPU_NAME:-gpu}" | tr 'A-Z' 'a-z' | sed -E 's/nvidia //; s/[^a-z0-9]+/-/g; s/^-|-$//g')
RESULT="$OUT/${SLUG}-${DATE}.json"
python3 - "$RAW" "$RESULT" "${GPU_NAME:-unknown}" "$OUT" <<'PY'
import json, os, re, sys
out, result, gpu, final = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def load(name):
    try: return json.load(open(os.path.join(out, name)))
    except Exception: return None
def us_by_backend_and_m(bench):
    # qrt bench --json rows summed over the shapes: {(backend, M): us}.
    t = {}
    for r in bench.get('rows', []):
        t[(r['backend'], r['m'])] = t.get((r['backend'], r['m']), 0.0) + r['us']
    return t
qrt, peers, dec = load('qrt-gemm.json'), load('peers-gemm.json'), load('qrt-decode.json')
smol_vs, smol = load('smollm2-vs-llamacpp.json'), load('qrt-decode-smollm2.json')
kept = load('speed-kept.json')
int4 = load('qrt-int4.json')
serve = load('serve-gpu.json')
hf = None
try:
    m = re.search(r'fp16 eager tok/s ([0-9.]+)', open('/tmp/qrt-logs/hf_decode.log').read())
    hf = float(m.group(1)) if m else None
except Exception: pass
rows = {}
for src, key in ((qrt, None), (peers, 'peer_')):
    for r in (src or {}).get('rows', []):
        d = rows.setdefault((r['K'], r['N'], r['M']), {'K': r['K'], 'N': r['N'], 'M': r['M']})
        for k, v in r.items():
            if k in ('K', 'N', 'M'): continue
            d[(key or '') + k] = v
rows = [rows[k] for k in sorted(rows, key=lambda k: (k[2], k[0], k[1]))]
Ms = sorted({r['M'] for r in rows})
def tot(M, key):
    v = [r.get(key) for r in rows if r['M'] == M]
    return sum(v) if v and all(isinstance(x, (int, float)) for x in v) else None
table, fp8_ratios, fp8_tuned_ratios = [], [], []
for M in Ms:
    t = {k: tot(M, k) for k in ('peer_fp16_us', 'peer_fp8_us', 'qrt_fp16_cublas_us', 'cuda_dequant_int4_us',
                                'cuda_fp8_us', 'cuda_fp8_tuned_us')}
    t['M'] = M
    if t['peer_fp8_us'] and t['cuda_fp8_us']: fp8_ratios.append(t['peer_fp8_us'] / t['cuda_fp8_us'])
    if t['peer_fp8_us'] and t['cuda_fp8_tuned_us']: fp8_tuned_ratios.append(t['peer_fp8_us'] / t['cuda_fp8_tuned_us'])
    table.append(t)
t4096 = next((t for t in table if t['M'] == 4096), {})
# The SmolLM2 run's second engine: cuda_gemv's bulk parameter forced (GEMV_BULK: its 'bulk').
smol_bulk = (smol or {}).get('gemv_bulk') or {}
summary = {
    'gpu': gpu,
    'fp8_vs_scaled_mm_min': min(fp8_tuned_ratios) if fp8_tuned_ratios else None,
    'fp8_vs_scaled_mm_min_default_params': min(fp8_ratios) if fp8_ratios else None,
    'dequant_vs_fp16_m4096': (t4096['peer_fp16_us'] / t4096['cuda_dequant_int4_us'])
        if t4096.get('peer_fp16_us') and t4096.get('cuda_dequant_int4_us') else None,
    'dequant_vs_qrt_fp16_m4096': (t4096['qrt_fp16_cublas_us'] / t4096['cuda_dequant_int4_us'])
        if t4096.get('qrt_fp16_cublas_us') and t4096.get('cuda_dequant_int4_us') else None,
    'decode_tok_s': (dec or {}).get('decode_tok_s'),
    'decode_tok_s_device_loop': (dec or {}).get('decode_tok_s_device_loop'),
    # The same model with QRT_CUDA_FUSED_PROJECTIONS=sumsq (a second process, same call).
    'decode_tok_s_sumsq': (load('qrt-decode-sumsq.json') or {}).get('decode_tok_s'),
    # bench/load_bench on the same model: seconds from checkpoint to a CUDA engine, and the floor.
    'load_7b_load_model_s': (load('qrt-load.json') or {}).get('load_model_s'),
    'load_7b_make_engine_s': (load('qrt-load.json') or {}).get('make_engine_s'),
    'load_7b_read_floor_s': (load('qrt-load.json') or {}).get('read_floor_s'),
    'smollm2_decode_tok_s_gemv_bulk': smol_bulk.get('decode_tok_s') if smol_bulk.get('bulk', 1) == 1 else None,
    'smollm2_decode_tok_s_gemv_no_bulk': smol_bulk.get('decode_tok_s') if smol_bulk.get('bulk', 1) == 0 else None,
    'hf_fp16_decode_tok_s': hf,
    # The default model (30 blocks rebuilt from the carried 8) next to llama.cpp CUDA, same call:
    # decode of 128 tokens from an empty context (tg128) and a 512-token prompt (pp512), medians of
    # three alternating runs, llama.cpp the better of -fa 0 / -fa 1 (bench/gpu_decode_vs_llamacpp.sh).
    'smollm2_decode_tok_s': (smol_vs or {}).get('qrt_decode_tok_s'),
    'smollm2_decode_vs_llamacpp': (smol_vs or {}).get('decode_vs_llamacpp'),
    'smollm2_prefill_tok_s': (smol_vs or {}).get('qrt_prefill_tok_s'),
    'smollm2_prefill_vs_llamacpp': (smol_vs or {}).get('prefill_vs_llamacpp'),
    'smollm2_llamacpp_decode_tok_s': (smol_vs or {}).get('llamacpp_decode_tok_s'),
    'smollm2_llamacpp_prefill_tok_s': (smol_vs or {}).get('llamacpp_prefill_tok_s'),
    # Fused decode ops against the unfused kernels (gpu_decode_bench UNFUSED=1, 128 tokens after 128).
    'smollm2_decode_tok_s_unfused': ((smol or {}).get('unfused') or {}).get('decode_tok_s'),
    'smollm2_decode_tok_s_fused': (smol or {}).get('decode_tok_s'),
    'smollm2_decode_step_kernels': ((smol or {}).get('decode_step_launches') or {}).get('kernels'),
    'smollm2_decode_step_kernels_unfused': (((smol or {}).get('unfused') or {}).get('decode_step_launches') or {}).get('kernels'),
    'smollm2_graph_eager_tokens_agree': (smol or {}).get('graph_eager_tokens_agree'),
    'decode_step_kernels': ((dec or {}).get('decode_step_launches') or {}).get('kernels'),
    'graph_eager_tokens_agree': (dec or {}).get('graph_eager_tokens_agree'),
    'notes': 'times in us summed over the 4 Llama-2-7B linears; peers from bench/peers/gemm_peers.py in the same run; '
             'fp8_vs_scaled_mm_min uses the tuned cuda_fp8 parameters (best of its tuning_space, as qrt tune picks)',
}
summary.update((int4 or {}).get('summary', {}))
# GGUF-like weights (the gguf stage): fp16 cuBLAS over the plan, summed over the four shapes.
gg = load('qrt-gguf-like.json')
if gg:
    t = us_by_backend_and_m(gg)
    for M in (1, 512):
        if t.get(('fp16_cublas', M)) and t.get(('plan', M)):
            summary['gguf_q4_1_m%d_speedup_vs_fp16' % M] = t[('fp16_cublas', M)] / t[('plan', M)]
    summary['gguf_like_plan'] = ['%sx%s M %s: %s' % (r['k'], r['n'], r['m'], r.get('params', ''))
                                 for r in gg.get('rows', []) if r['backend'] == 'plan']
# qrt serve --device cuda:0 on the random Llama-2-7B GPTQ model (bench/serve_load.sh): aggregate
# tokens/s of N streaming clients next to one.
if serve:
    by = {r['streams']: r for r in serve.get('rows', []) if r.get('server') == 'qrt'}
    n = serve.get('clients')
    summary['serve_gpu_streams'] = n
    summary['serve_gpu_tok_s'] = (by.get(n) or {}).get('tokens_per_s')
    summary['serve_gpu_single_stream_tok_s'] = (by.get(1) or {}).get('tokens_per_s')
    summary['serve_gpu_failed'] = sum(r.get('failed', 0) for r in by.values())
    if summary['serve_gpu_tok_s'] and summary['serve_gpu_single_stream_tok_s']:
        summary['serve_gpu_vs_single_stream'] = summary['serve_gpu_tok_s'] / summary['serve_gpu_single_stream_tok_s']
if kept:
    summary['speed_kept_smollm2_decode_vs_base'] = kept.get('ratio_of_medians')
    summary['speed_kept_base_commit'] = open('.gpu-base/COMMIT').read().strip() if os.path.exists('.gpu-base/COMMIT') else None
# Perplexity by the CPU engine and the GPU engine with an fp16 and an fp8 KV cache
# (CudaEngine.PerplexityCpuAgainstGpuAndFp8KvCache prints them: the default model's first 8 blocks,
# the committed KJV text, windows of 256).
try:
    log = open(os.path.join(final, 'tests.log')).read()
    m = re.search(r'perplexity \(([^)]*)\): f16 KV cache ([0-9.]+), fp8 e4m3 ([0-9.]+)', log)
    if m:
        summary['kv_cache_ppl_setup'] = m.group(1)
        summary['kv_f16_ppl'] = float(m.group(2))
        summary['kv_fp8_ppl'] = float(m.group(3))
    m = re.search(r'CPU engine ([0-9.]+) \(GPU f16', log)
    if m:
        summary['cpu_engine_ppl'] = float(m.group(1))
        summary['gpu_vs_cpu_ppl'] = summary['kv_f16_ppl'] / float(m.group(1)) if summary.get('kv_f16_ppl') else None
except Exception: pass
# qrt tune + qrt bench on the GPU: the tuned plan against the default plan, per shape and M.
tuned = None
try: tuned = json.load(open(os.path.join(final, 'qrt-bench-tuned.json')))
except Exception: pass
if tuned:
    d = {(r['k'], r['n'], r['m']): r['us'] for r in tuned['rows'] if r['backend'] == 'plan'}
    gains = [{'K': r['k'], 'N': r['n'], 'M': r['m'], 'default_us': d[(r['k'], r['n'], r['m'])], 'tuned_us': r['us'],
              'gain': d[(r['k'], r['n'], r['m'])] / r['us'], 'tuned_plan': r.get('params')}
             for r in tuned['rows'] if r['backend'] == 'plan+tuned' and (r['k'], r['n'], r['m']) in d]
    if gains:
        summary['tuned_vs_default_plan_min'] = min(g['gain'] for g in gains)
        summary['tuned_vs_default_plan_max'] = max(g['gain'] for g in gains)
    summary['tuned_plan_gains'] = gains
    # The whole plan (cuda_gemv / cuda_marlin / cuda_dequant by M, tuned) against fp16 cuBLAS,
    # summed over the model's distinct linear shapes, timed by qrt bench in the same call.
    tot = us_by_backend_and_m(tuned)
    for M in sorted({r['m'] for r in tuned['rows']}):
        if ('fp16_cublas', M) in tot and ('plan+tuned', M) in tot:
            summary['plan_m%d_speedup_vs_fp16' % M] = tot[('fp16_cublas', M)] / tot[('plan+tuned', M)]
    floor_m1 = sum(r['floor_us'] for r in tuned['rows'] if r['backend'] == 'plan+tuned' and r['m'] == 1)
    if floor_m1 > 0:
        summary['plan_m1_vs_floor'] = tot[('plan+tuned', 1)] / floor_m1
doc = {'summary': summary, 'int4': int4, 'serve_gpu': serve, 'totals_by_m': table, 'rows': rows, 'decode': dec,
       'smollm2_vs_llamacpp': smol_vs, 'smollm2_decode': smol, 'speed_kept': kept,
       'peer_copy_GBps': (peers or {}).get('copy_GBps'), 'qrt_device': (qrt or {}).get('device')}
json.dump(doc, open(result, 'w'), indent=1)
print(json.dumps(summary, indent=1))
f = lambda v: '-' if v is None else ('%.1f' % v)
print('\n%6s %11s %11s %11s %11s %11s %11s %8s' % ('M', 'torch fp16', 'qrt fp16', 'dequant i4', 'torch fp8',
      'cuda_fp8', 'fp8 tuned', 'fp8 x'))
for t in table:
    x = (t['peer_fp8_us'] / t['cuda_fp8_tuned_us']) if t['peer_fp8_us'] and t['cuda_fp8_tuned_us'] else None
    print('%6d %11s %11s %11s %11s %11s %11s %8s' % (t['M'], f(t['peer_fp16_us']), f(t['qrt_fp16_cublas_us']),
          f(t['cuda_dequant_int4_us']), f(t['peer_fp8_us']), f(t['cuda_fp8_us']), f(t['cuda_fp8_tuned_us']),
          '-' if x is None else '%.2f' % x))
print('decode tok/s (Llama-2-7B shape, GPTQ 4-bit, batch 1): qrt host loop %s (all fused, sumsq: %s), qrt device loop %s; '
      'HF fp16 eager %s' % (f(summary['decode_tok_s']), f(summary['decode_tok_s_sumsq']),
                           f(summary['decode_tok_s_device_loop']), f(hf)))
print('checkpoint to CUDA engine (same model): load_model %s s, make_engine %s s; reading its files %s s'
      % (f(summary['load_7b_load_model_s']), f(summary['load_7b_make_engine_s']), f(summary['load_7b_read_floor_s'])))
if serve:
    print('qrt serve --device cuda:0 (same model): %s streams %s tok/s aggregate, 1 stream %s tok/s, failed %s'
          % (summary.get('serve_gpu_streams'), f(summary.get('serve_gpu_tok_s')),
             f(summary.get('serve_gpu_single_stream_tok_s')), summary.get('serve_gpu_failed')))
r2 = lambda v: '-' if v is None else ('%.2f' % v)
print('GGUF-like weights (4-bit, group 32, float zero points), the plan vs fp16 cuBLAS: M 1 %s x, M 512 %s x'
      % (r2(summary.get('gguf_q4_1_m1_speedup_vs_fp16')), r2(summary.get('gguf_q4_1_m512_speedup_vs_fp16'))))
print('SmolLM2 (30 blocks): decode tg128 qrt %s tok/s, llama.cpp %s (qrt / llama.cpp %s); prompt pp512 qrt %s, '
      'llama.cpp %s (%s); decode step kernels %s fused, %s unfused'
      % (f(summary['smollm2_decode_tok_s']), f(summary['smollm2_llamacpp_decode_tok_s']),
         r2(summary['smollm2_decode_vs_llamacpp']), f(summary['smollm2_prefill_tok_s']),
         f(summary['smollm2_llamacpp_prefill_tok_s']), r2(summary['smollm2_prefill_vs_llamacpp']),
         summary['smollm2_decode_step_kernels'], summary['smollm2_decode_step_kernels_unfused']))
PY
mkdir -p bench/results && cp "$RESULT" bench/results/ 2>/dev/null
cp "$LOGS/tune.log" "$LOGS/bench-tuned.log" "$OUT/" 2>/dev/null
echo "results: $RESULT ($((SECONDS - START)) s)"
