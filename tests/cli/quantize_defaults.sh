#!/usr/bin/env bash
# qrt quantize without --group-size fits the model (the default model's 576 is no multiple of 128:
# 64 is chosen and said); a --group-size that does not fit names the sizes that do; the folder
# records what made it in qrt_provenance.json (method, bits, group size, algorithm, calibration
# file and its sha256, qrt version and commit) while config.json stays what transformers reads;
# calibration reports progress when stderr is not a terminal.
#   bash tests/cli/quantize_defaults.sh <path-to-qrt> <tests/data>
set -uo pipefail
QRT="${1:?usage: quantize_defaults.sh <qrt> <tests/data>}"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

timeout 300 "$QRT" quantize "$MODEL" "$tmp/q" --method gptq --bits 4 --calib none >"$tmp/out" 2>"$tmp/err" ||
  { echo "FAIL: quantize without --group-size: exit $?: $(tail -n 2 "$tmp/err")"; exit 1; }
grep -q '^qrt: --group-size 64: the largest of 128, 64, 32 that divides every in_features' "$tmp/err" ||
  bad "the chosen group size is not said: $(head -n 2 "$tmp/err")"
grep -q '"group_size": *64' "$tmp/q/config.json" || bad "config.json does not have group_size 64"
[ -s "$tmp/q/qrt_provenance.json" ] || bad "no qrt_provenance.json"
version="$("$QRT" --version)"
python3 - "$tmp/q" "$version" <<'PY' || bad "qrt_provenance.json / config.json: see above"
import json, sys
folder, version = sys.argv[1], sys.argv[2]
p = json.load(open(folder + "/qrt_provenance.json"))
assert p["method"] == "gptq" and p["bits"] == 4 and p["group_size"] == 64, p
assert p["algorithm"] == "round to nearest" and p["calibration"] is None, p
assert p["group_size_source"].startswith("chosen"), p
made = p["made_by"]
assert version.startswith("qrt " + made["version"] + " (git " + made["git_commit"]), (version, made)
c = json.load(open(folder + "/config.json"))
q = c["quantization_config"]
assert q["quant_method"] == "gptq" and q["bits"] == 4 and q["group_size"] == 64, q
assert q["meta"]["quantizer"] == ["qrt:" + made["version"]], q
PY

# A group size that divides no layer names the ones that do; nothing is written.
timeout 120 "$QRT" quantize "$MODEL" "$tmp/g128" --method gptq --group-size 128 --calib none >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] || bad "--group-size 128: exit $rc, expected 2"
grep -q 'does not divide in_features 576; sizes that divide every layer: 64, 32, 16 (or -1' "$tmp/err" ||
  bad "--group-size 128: $(head -n 1 "$tmp/err")"
[ -e "$tmp/g128" ] && bad "--group-size 128 left a folder behind"

# The calibration text is recorded with its sha256 (when this build has the GPTQ algorithm), here
# on a tiny random model that calibrates in a second.
python3 "$(dirname "$0")/tiny_llama_folder.py" "$tmp/tiny" || bad "could not write the tiny model"
printf 'In the beginning was the word, and the word was short.\n%.0s' $(seq 1 40) >"$tmp/calib.txt"
if timeout 120 "$QRT" quantize "$tmp/tiny" "$tmp/c" --method gptq --calib "$tmp/calib.txt" >"$tmp/out" 2>"$tmp/err"; then
  sum="$(sha256sum "$tmp/calib.txt" | cut -d' ' -f1)"
  grep -q "\"sha256\": \"$sum\"" "$tmp/c/qrt_provenance.json" || bad "--calib: the text's sha256 is not recorded"
  grep -q '"algorithm": "gptq' "$tmp/c/qrt_provenance.json" || bad "--calib: the algorithm is not recorded"
  grep -q '"tokens": [1-9]' "$tmp/c/qrt_provenance.json" || bad "--calib: the token count is not recorded"
  grep -q '^qrt: GPTQ (layers): 2/2 ' "$tmp/err" || bad "--calib: no progress line off a terminal: $(cat "$tmp/err")"
elif grep -q 'not available in this build' "$tmp/err"; then
  echo "note: no GPTQ calibration in this build: the --calib case is skipped"
else
  bad "--calib: exit: $(tail -n 2 "$tmp/err")"
fi

[ "$fail" -eq 0 ] && echo "OK: quantize_defaults"
exit "$fail"
