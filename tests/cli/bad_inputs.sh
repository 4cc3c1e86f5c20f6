#!/usr/bin/env bash
# Bad-input corpus test: qrt must reject every malformed input in tests/data/bad/ with a clean error.
#
#   bash tests/cli/bad_inputs.sh <path-to-qrt> <tests/data>
#
# For every case it expects: an exit status in 1..127 (no crash, abort or sanitizer kill), exactly
# ONE line on stderr, starting with "qrt: error:" and naming the input.
#
# How cases are found (add yours by dropping files in tests/data/bad/, no edit here needed):
#   * Every entry E of tests/data/bad/ (a file or a folder) is a case; by default the command is
#         qrt inspect tests/data/bad/E
#     and the error line must contain E's name.
#   * A file tests/data/bad/E.cmd overrides that for E. Lines starting with '#' are comments; the
#     first other line holds the qrt arguments (split on spaces), where {DATA} stands for the
#     tests/data folder and {CASE} for tests/data/bad/E. An optional line "expect: TEXT" gives what
#     the error line must contain instead of E's name. Example (folder case gptq_bits5/):
#         tests/data/bad/gptq_bits5.cmd:   dequantize {CASE} /tmp/qrt-bad-out
#                                          expect: bits
#   * A .cmd file with no entry E beside it is a case of its own (its arguments point elsewhere).
#   * README*, *.md, *.txt and *.cmd entries are not cases themselves.
set -uo pipefail

QRT="${1:?usage: bad_inputs.sh <qrt> <tests/data>}"
DATA="${2:?usage: bad_inputs.sh <qrt> <tests/data>}"
BAD="$DATA/bad"
[ -d "$BAD" ] || { echo "no folder $BAD"; exit 1; }

failures=0
count=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

run_case() {
  local name="$1" args_line="$2" expect="$3"
  local case_path="$BAD/$name"
  args_line="${args_line//\{DATA\}/$DATA}"
  args_line="${args_line//\{CASE\}/$case_path}"
  local -a args
  read -r -a args <<<"$args_line"
  count=$((count + 1))
  timeout 120 "$QRT" "${args[@]}" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  local first
  first=$(head -n 1 "$tmp/err")
  local why=""
  if [ "$rc" -eq 0 ]; then
    why="exit status 0 (the bad input was accepted)"
  elif [ "$rc" -eq 124 ]; then
    why="timed out after 120 s"
  elif [ "$rc" -ge 128 ]; then
    why="exit status $rc (crash or signal)"
  elif [ "$lines" -ne 1 ]; then
    why="$lines lines on stderr, expected exactly 1"
  elif [[ "$first" != "qrt: error:"* ]]; then
    why="stderr does not start with 'qrt: error:'"
  elif [[ "$first" != *"$expect"* ]]; then
    why="error line does not contain '$expect'"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL $name: $why"
    echo "  command: qrt ${args[*]}"
    sed -n '1,20s/^/  stderr: /p' "$tmp/err"
  else
    echo "ok   $name: $first"
  fi
}

shopt -s nullglob
for entry in "$BAD"/*; do
  name="$(basename "$entry")"
  case "$name" in
    *.cmd | *.md | *.txt | README*) continue ;;
  esac
  args="inspect {CASE}"
  expect="$name"
  if [ -f "$entry.cmd" ]; then
    args="$(grep -v '^[[:space:]]*#' "$entry.cmd" | grep -v '^expect:' | grep -v '^[[:space:]]*$' | head -n 1)"
    e="$(grep '^expect:' "$entry.cmd" | head -n 1 | sed 's/^expect:[[:space:]]*//')"
    [ -n "$e" ] && expect="$e"
  fi
  run_case "$name" "$args" "$expect"
done
for cmd in "$BAD"/*.cmd; do
  name="$(basename "$cmd" .cmd)"
  [ -e "$BAD/$name" ] && continue
  args="$(grep -v '^[[:space:]]*#' "$cmd" | grep -v '^expect:' | grep -v '^[[:space:]]*$' | head -n 1)"
  expect="$(grep '^expect:' "$cmd" | head -n 1 | sed 's/^expect:[[:space:]]*//')"
  run_case "$name" "$args" "${expect:-qrt: error:}"
done

echo "$((count - failures))/$count bad inputs rejected cleanly"
[ "$failures" -eq 0 ]
