#!/usr/bin/env bash
# End to end: bad inputs a user makes with a real model give ONE clear error line ("qrt: error: ...",
# followed for command-line usage errors by the fixed "run 'qrt --help' ..." hint),
# an exit status in 1..127 (no crash), and no output folder left behind.
#   bash tests/cli/e2e_bad_inputs.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: e2e_bad_inputs.sh <qrt> <tests/data>}"
DATA="${2:?usage: e2e_bad_inputs.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# expect_error LABEL EXPECTED_TEXT NO_OUTPUT_PATH|- qrt-args...
expect_error() {
  local label="$1" expect="$2" outpath="$3"; shift 3
  timeout 60 "$QRT" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines first
  lines=$(wc -l <"$tmp/err"); first=$(head -n 1 "$tmp/err")
  # A command-line usage error adds one fixed hint line (src/cli/main.cpp): still one error.
  if [ "$lines" -eq 2 ] && [[ "$(sed -n 2p "$tmp/err")" == "run 'qrt --help'"* ]]; then lines=1; fi
  if [ "$rc" -eq 0 ]; then bad "$label: exit 0 (accepted)"
  elif [ "$rc" -ge 124 ]; then bad "$label: exit $rc (timeout, crash or signal)"
  elif [ "$lines" -ne 1 ]; then bad "$label: $lines lines on stderr, expected 1: $(head -n 3 "$tmp/err")"
  elif [[ "$first" != "qrt: error:"* ]]; then bad "$label: stderr does not start with 'qrt: error:': $first"
  elif [[ "$first" != *"$expect"* ]]; then bad "$label: error does not mention '$expect': $first"
  else echo "ok [$label] rc=$rc: $first"
  fi
  if [ "$outpath" != "-" ] && [ -e "$outpath" ]; then bad "$label: output $outpath was left behind"; fi
}

# A plain f16 folder and a GPTQ folder to damage (copies link the big safetensors file).
timeout 120 "$QRT" dequantize "$MODEL" "$tmp/f16" --dtype f16 >/dev/null 2>"$tmp/err" ||
  { echo "FAIL: dequantize: $(tail -n 2 "$tmp/err")"; exit 1; }
# A writer killed before it finished leaves OUT.partial-<pid> (with qrt's marker
# file); the next write to OUT removes those of dead processes and leaves a live writer's alone, and
# never one without the marker, whatever its name (checked at the end).
sh -c 'exit 0' & dead=$!; wait "$dead"
sh -c 'exit 0' & dead2=$!; wait "$dead2"
mkdir -p "$tmp/gptq.partial-$dead" "$tmp/gptq.partial-$$" "$tmp/gptq.partial-$dead2"
for d in "$tmp/gptq.partial-$dead" "$tmp/gptq.partial-$$"; do
  printf 'qrt output folder; the files qrt wrote here:\n' >"$d/.qrt-output"
done
echo "not qrt's" >"$tmp/gptq.partial-$dead2/mine.txt"
timeout 120 "$QRT" quantize "$tmp/f16" "$tmp/gptq" --method gptq --bits 4 --group-size 64 --calib none >/dev/null 2>"$tmp/err" ||
  { echo "FAIL: quantize: $(tail -n 2 "$tmp/err")"; exit 1; }
copy_of() {  # copy_of SRC DST: every file copied except model.safetensors, which is linked
  mkdir -p "$2"
  for f in "$1"/*; do
    if [ "$(basename "$f")" = model.safetensors ]; then ln -s "$f" "$2/"; else cp "$f" "$2/"; fi
  done
}
copy_of "$tmp/f16" "$tmp/arch";  sed -i 's/LlamaForCausalLM/FooForCausalLM/' "$tmp/arch/config.json"
copy_of "$tmp/gptq" "$tmp/notok"; rm "$tmp/notok/tokenizer.json"
copy_of "$tmp/f16" "$tmp/notok16"; rm "$tmp/notok16/tokenizer.json"
copy_of "$tmp/gptq" "$tmp/shape"; sed -i -E 's/"hidden_size": *576/"hidden_size": 640/' "$tmp/shape/config.json"
copy_of "$tmp/gptq" "$tmp/bits5"; sed -i -E 's/"bits": *4/"bits": 5/' "$tmp/bits5/config.json"
grep -q '"bits": *5' "$tmp/bits5/config.json" || bad "setup: could not set bits 5"
grep -q '"hidden_size": *640' "$tmp/shape/config.json" || bad "setup: could not change hidden_size"
mkdir -p "$tmp/noconfig"
long="$(for i in $(seq 1 200); do printf 'word '; done)"

expect_error "empty prompt" "prompt" - run -m "$MODEL" -p "" -n 8
expect_error "prompt > max-input-length" "max_input_length" - run -m "$MODEL" -p "$long" --max-input-length 32 -n 8
expect_error "context larger than memory" "lower --max-input-length" - run -m "$MODEL" -p hi --max-input-length 100000000 -n 4
expect_error "max-new-tokens past 2^31" "at most 2^31" - run -m "$MODEL" -p hi -n 99999999999999999
expect_error "unknown kv cache type" "--kv-cache f8" - run -m "$MODEL" -p hi -n 4 --kv-cache f8
expect_error "100000 threads" "--threads" - run -m "$MODEL" -p hi -n 4 -t 100000
expect_error "negative threads" "--threads" - run -m "$MODEL" -p hi -n 4 -t -1
expect_error "unknown architecture (run)" "FooForCausalLM" - run -m "$tmp/arch" -p hi -n 4
expect_error "unknown architecture (quantize)" "FooForCausalLM" "$tmp/out-arch" \
  quantize "$tmp/arch" "$tmp/out-arch" --method gptq --bits 4 --group-size 64
expect_error "missing tokenizer (run)" "tokenizer" - run -m "$tmp/notok" -p hi -n 4
# A folder without tokenizer.json: refused before any work, naming the input folder and the missing file.
expect_error "missing tokenizer (quantize)" "$tmp/notok16: no tokenizer.json" "$tmp/out-nt16" \
  quantize "$tmp/notok16" "$tmp/out-nt16" --method gptq --bits 4 --group-size 64
expect_error "missing tokenizer (perplexity)" "tokenizer" - perplexity -m "$tmp/notok" -f "$DATA/text/kjv_ruth_jonah.txt" --ctx 64
expect_error "shapes config vs tensors (run)" "hidden_size" - run -m "$tmp/shape" -p hi -n 4
expect_error "shapes config vs tensors (dequantize)" "hidden_size" "$tmp/out-shape" dequantize "$tmp/shape" "$tmp/out-shape"
expect_error "bits 5 in config (run)" "bits" - run -m "$tmp/bits5" -p hi -n 4
expect_error "bits 5 in config (plan)" "bits" - plan "$tmp/bits5"
expect_error "bits 5 in config (inspect)" "bits: 5 is not one of" - inspect "$tmp/bits5"
expect_error "bits 5 in config (dequantize)" "bits" "$tmp/out-bits5" dequantize "$tmp/bits5" "$tmp/out-bits5"
expect_error "--bits 5 (quantize)" "bits" "$tmp/out-q5" quantize "$tmp/f16" "$tmp/out-q5" --method gptq --bits 5 --group-size 64
expect_error "group size not dividing (quantize)" "group" "$tmp/out-g100" \
  quantize "$tmp/f16" "$tmp/out-g100" --method gptq --bits 4 --group-size 100
expect_error "nonexistent model (run)" "/nonexistent/model.gguf" - run -m /nonexistent/model.gguf -p hi
expect_error "nonexistent model (inspect)" "/nonexistent/model.gguf" - inspect /nonexistent/model.gguf
expect_error "nonexistent text (perplexity)" "/nonexistent/text.txt" - perplexity -m "$MODEL" -f /nonexistent/text.txt
expect_error "folder without config.json (run)" "config.json" - run -m "$tmp/noconfig" -p hi
expect_error "folder without config.json (dequantize)" "config.json" "$tmp/out-nc" dequantize "$tmp/noconfig" "$tmp/out-nc"
expect_error "unimplemented backend (run)" "available" - run -m "$MODEL" -p hi -n 4 --backend triton


# inspect describes an unknown architecture, with a warning line, exit 0.
timeout 60 "$QRT" inspect "$tmp/arch" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 0 ] || bad "unknown architecture (inspect): exit $rc"
grep -q '^qrt: warning: .*FooForCausalLM' "$tmp/err" || bad "unknown architecture (inspect): no warning line"

# An explicit backend that cannot run here: details kept, but the FIRST line is a
# complete "qrt: error:" summary (backend, layer, reason, what would work, how many layers).
timeout 60 "$QRT" run -m "$MODEL" -p hi -n 4 --backend cuda_marlin >"$tmp/out" 2>"$tmp/err"; rc=$?
first="$(head -n 1 "$tmp/err")"
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "run --backend cuda_marlin on cpu: exit $rc"
[[ "$first" == "qrt: error: backend cuda_marlin"*"cannot run"*"would work: "*"quantized layers cannot be planned"* ]] ||
  bad "run --backend cuda_marlin on cpu: first line is not a one-line summary: $first"
grep -q '^    cpu_simd: ok' "$tmp/err" || bad "run --backend cuda_marlin on cpu: the per-backend details are gone"

# Stale partial folders (set up before the GPTQ folder was written).
[ -e "$tmp/gptq.partial-$dead" ] && bad "the stale $tmp/gptq.partial-$dead (dead pid) was not removed"
[ -d "$tmp/gptq.partial-$$" ] || bad "the partial folder of a live pid ($$) was removed"
[ -f "$tmp/gptq.partial-$dead2/mine.txt" ] || bad "a folder named like a partial but without qrt's marker was removed"

[ "$fail" -eq 0 ] && echo "OK: e2e_bad_inputs"
exit "$fail"
