#!/usr/bin/env bash
# qrt used as other projects use it, on the default model ($QRT_DEFAULT_MODEL; without it the
# consumers are built but not run):
#   1. `cmake --install` of a build into a prefix, a find_package(qrt) consumer built against it
#      (every installed header also compiled on its own), its C++ program run;
#   2. an add_subdirectory consumer building qrt as libqrt.so (QRT_SHARED, CPU only), its C
#      program (tests/capi/capi_generate.c) run; the same consumer configured with FetchContent;
#   3. `pip install .` into a fresh virtual environment, `import qrt`, then tests/python (pytest).
#   bash tests/package/run.sh <qrt build dir> <scratch dir>
set -euo pipefail
BUILD="$(cd "${1:?usage: run.sh <build dir> <scratch dir>}" && pwd)"
WORK="${2:?usage: run.sh <build dir> <scratch dir>}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
JOBS="${QRT_JOBS:-$(nproc)}"
MODEL="${QRT_DEFAULT_MODEL:-}"
rm -rf "$WORK"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
step() { echo "-- package: $*"; }
run_model() {  # program args...: runs it when the default model is there
  if [ -n "$MODEL" ] && [ -e "$MODEL" ]; then "$@"; else echo "SKIP: QRT_DEFAULT_MODEL is unset or missing: not running $1"; fi
}

step "install into $WORK/prefix, build a find_package(qrt) consumer"
cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cmake -S "$REPO/tests/package/find_package" -B "$WORK/find_package" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/find_package" -j "$JOBS" >/dev/null
run_model "$WORK/find_package/generate_cpp" "$MODEL"

step "build qrt as libqrt.so inside an add_subdirectory consumer"
cmake -S "$REPO/tests/package/add_subdirectory" -B "$WORK/add_subdirectory" -DCMAKE_BUILD_TYPE=Release \
  -DQRT_SOURCE_DIR="$REPO" -DQRT_SHARED=ON -DQRT_CUDA=OFF >/dev/null
cmake --build "$WORK/add_subdirectory" -j "$JOBS" >/dev/null
# ldd writes line by line: `ldd | grep -q` under pipefail fails whenever grep exits before ldd's
# last write (SIGPIPE), so the whole listing is read first.
linked="$(ldd "$WORK/add_subdirectory/generate_c")"
grep -q 'libqrt\.so' <<<"$linked" || { echo "FAIL: generate_c is not linked to libqrt.so:"; echo "$linked"; exit 1; }
run_model "$WORK/add_subdirectory/generate_c"

step "configure the same consumer with FetchContent (not built: it would compile qrt again)"
cmake -S "$REPO/tests/package/add_subdirectory" -B "$WORK/fetchcontent" -DCMAKE_BUILD_TYPE=Release \
  -DQRT_SOURCE_DIR="$REPO" -DVIA_FETCHCONTENT=ON -DQRT_CUDA=OFF >/dev/null

step "pip install . into a fresh virtual environment, then pytest"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check pytest
CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$REPO"
(cd "$WORK" && "$WORK/venv/bin/python" -c "import qrt; print(qrt.__version__)")
(cd "$WORK" && QRT_CLI="$BUILD/qrt" "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider "$REPO/tests/python")
