#!/usr/bin/env bash
# `qrt inspect` on inputs it must not describe silently, no model needed:
#   - a file that is neither GGUF nor safetensors: the same "not a GGUF file ... not a folder" error
#     as `qrt run -m` (not a confusing safetensors header message), exit 2, one line;
#   - a GPTQ folder with "bits": 5: the validation error run/plan give, exit 2, one line;
#   - an architecture qrt does not run: described (exit 0) with a "qrt: warning:" line naming it.
#   bash tests/cli/inspect_inputs.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: inspect_inputs.sh <qrt> <tests/data>}"
DATA="${2:?usage: inspect_inputs.sh <qrt> <tests/data>}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# expect_error LABEL EXPECTED_RC EXPECTED_TEXT qrt-args...
expect_error() {
  local label="$1" want_rc="$2" expect="$3"; shift 3
  timeout 60 "$QRT" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines first
  lines=$(wc -l <"$tmp/err"); first=$(head -n 1 "$tmp/err")
  if [ "$rc" -ne "$want_rc" ]; then bad "$label: exit $rc, expected $want_rc: $first"
  elif [ "$lines" -ne 1 ]; then bad "$label: $lines lines on stderr, expected 1: $(head -n 3 "$tmp/err")"
  elif [[ "$first" != "qrt: error:"* ]]; then bad "$label: stderr does not start with 'qrt: error:': $first"
  elif [[ "$first" != *"$expect"* ]]; then bad "$label: error does not mention '$expect': $first"
  else echo "ok [$label] rc=$rc: $first"
  fi
}

# 1. A text file (#9), also under a name without an extension; a .safetensors name keeps the
#    safetensors reader's own message.
expect_error "text file" 2 "not a GGUF file (no GGUF magic), not a safetensors file and not a folder" \
  inspect "$DATA/text/kjv_ruth_jonah.txt"
cp "$DATA/text/kjv_ruth_jonah.txt" "$tmp/model"
expect_error "text file without extension" 2 "$tmp/model: not a GGUF file" inspect "$tmp/model"
cp "$DATA/text/kjv_ruth_jonah.txt" "$tmp/fake.safetensors"
timeout 60 "$QRT" inspect "$tmp/fake.safetensors" >/dev/null 2>"$tmp/err"; rc=$?
{ [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ]; } || bad "text named .safetensors: exit $rc"
grep -q 'not a GGUF file' "$tmp/err" && bad "text named .safetensors: should be read as safetensors: $(cat "$tmp/err")"

# A safetensors file under another name is still recognized by its header.
cp "$DATA/fixtures/gptq_v1_4bit_actorder.safetensors" "$tmp/weights.bin"
timeout 60 "$QRT" inspect "$tmp/weights.bin" >"$tmp/out" 2>"$tmp/err" || bad "safetensors named .bin: $(cat "$tmp/err")"
grep -q 'safetensors' "$tmp/out" || bad "safetensors named .bin: not described as safetensors"

# 2. bits 5 (#4): the validation error, exit 2 (bad input), not a description with exit 0.
expect_error "gptq bits 5" 2 "quantization_config.bits: 5 is not one of 2, 3, 4, 8" inspect "$DATA/bad/gptq_bits5"

# 3. An unknown architecture (#4): described, with a warning line naming it, exit 0.
mkdir -p "$tmp/arch"
sed -e 's/"bits": *5/"bits": 4/' -e 's/LlamaForCausalLM/FooForCausalLM/' "$DATA/bad/gptq_bits5/config.json" \
  >"$tmp/arch/config.json"
grep -q FooForCausalLM "$tmp/arch/config.json" || bad "setup: could not set the architecture"
cp "$DATA/fixtures/gptq_v1_4bit_actorder.safetensors" "$tmp/arch/model.safetensors"
timeout 60 "$QRT" inspect "$tmp/arch" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 0 ] || bad "unknown architecture: exit $rc: $(head -n 2 "$tmp/err")"
grep -q '^qrt: warning: .*FooForCausalLM.*not supported' "$tmp/err" || bad "unknown architecture: no warning line: $(cat "$tmp/err")"
grep -q 'FooForCausalLM' "$tmp/out" || bad "unknown architecture: not described on stdout"

[ "$fail" -eq 0 ] && echo "OK: inspect_inputs"
exit "$fail"
