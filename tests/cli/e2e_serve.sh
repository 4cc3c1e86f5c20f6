#!/usr/bin/env bash
# End to end: `qrt serve` on the default model over loopback (127.0.0.1, a free port the server
# picks and prints). curl for the API key and the error cases; the official openai Python client
# (tests/cli/serve_clients.py, installed into a venv next to the qrt binary) for completions, chat,
# streaming, stop strings, greedy output equal to `qrt run` alone and next to seven other
# requests, and a client that disconnects; then a second server for the connection limit, a full
# queue and SIGTERM (exit 0). Every server is killed on exit; every call has a timeout.
#   bash tests/cli/e2e_serve.sh <path-to-qrt> <tests/data>
# Skips (exit 0, "SKIP: ...") when $QRT_DEFAULT_MODEL is unset or missing.
set -uo pipefail
QRT="${1:?usage: e2e_serve.sh <qrt> <tests/data>}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL="${QRT_DEFAULT_MODEL:-}"
if [ -z "$MODEL" ] || [ ! -e "$MODEL" ]; then
  echo "SKIP: QRT_DEFAULT_MODEL is unset or missing (run scripts/fetch-model.sh)"; exit 0
fi
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() {  # $1 = what, $2 = 0 when it holds
  if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}

# The openai client, pinned, in a venv beside the binary (CI has PyPI; later runs reuse it).
VENV="$(dirname "$QRT")/serve-test-venv"
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  rm -rf "$VENV"
  if ! { timeout 300 python3 -m venv "$VENV" && timeout 300 "$VENV/bin/pip" install -q "openai==3.63.0"; }; then
    echo "FAIL: could not install the openai client into $VENV"; exit 1
  fi
fi

start_server() {  # $1 = name; the rest: qrt serve flags. Sets PORT and SERVER_PID.
  local name="$1"; shift
  "$QRT" serve -m "$MODEL" --host 127.0.0.1 --port 0 -t 2 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  PORT=""
  for _ in $(seq 600); do
    PORT="$(sed -n 's/^qrt: listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.err")"
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "FAIL: $name did not start: $(tail -n 3 "$tmp/$name.err")"; exit 1
}

KEY="test-key-$RANDOM$RANDOM"
start_server main --api-key "$KEY" --max-seqs 8 --ctx-size 1024 --max-body-bytes 65536 --max-connections 32
BASE="http://127.0.0.1:$PORT"
MODEL_ID="$(basename "$MODEL" .gguf)"
AUTH=(-H "Authorization: Bearer $KEY")
# status code of a request; the body goes to $tmp/body
code() { curl -s -o "$tmp/body" -w '%{http_code}' --max-time 60 "$@"; }
is_error() {  # the body is OpenAI's error object, with the given code when one is given
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert isinstance(e["message"], str) and e["type"] and "param" in e; assert len(sys.argv) < 3 or e["code"] == sys.argv[2]' "$tmp/body" "$@" 2>/dev/null
}
metric() { curl -s --max-time 30 "${AUTH[@]}" "$BASE/metrics" | sed -n "s/^$1 //p"; }

# ---- the API key ----
check "/health needs no key" "$([ "$(code "$BASE/health")" = 200 ]; echo $?)"
check "no key: 401" "$([ "$(code "$BASE/v1/models")" = 401 ] && is_error invalid_api_key; echo $?)"
before_prompt="$(metric qrt_prompt_tokens_total)"
before_steps="$(metric qrt_step_rows_total)"
check "wrong key: 401" "$([ "$(code -H 'Authorization: Bearer nope' "$BASE/v1/completions" \
  -d "{\"model\":\"$MODEL_ID\",\"prompt\":\"hello\",\"max_tokens\":4}")" = 401 ] && is_error invalid_api_key; echo $?)"
check "not Bearer: 401" "$([ "$(code -H "Authorization: $KEY" "$BASE/metrics")" = 401 ]; echo $?)"
check "a rejected request did no work" \
  "$([ "$(metric qrt_prompt_tokens_total)" = "$before_prompt" ] && [ "$(metric qrt_step_rows_total)" = "$before_steps" ]; echo $?)"
check "right key: 200" "$([ "$(code "${AUTH[@]}" "$BASE/v1/models")" = 200 ] && grep -q "\"$MODEL_ID\"" "$tmp/body"; echo $?)"

# ---- bad requests: 4xx in OpenAI's shape, and the server serves on ----
post() { code "${AUTH[@]}" -H 'Content-Type: application/json' "$BASE/v1/completions" --data-binary "$1"; }
check "malformed JSON: 400" "$([ "$(post '{"model": ')" = 400 ] && is_error; echo $?)"
printf '{"model":"%s","prompt":"\xff\xfe bad","max_tokens":4}' "$MODEL_ID" >"$tmp/bad_utf8.json"
check "invalid UTF-8: 400" "$([ "$(post "@$tmp/bad_utf8.json")" = 400 ] && is_error; echo $?)"
check "wrong type: 400" "$([ "$(post "{\"model\":\"$MODEL_ID\",\"prompt\":\"x\",\"max_tokens\":\"4\"}")" = 400 ] && grep -q '"param":"max_tokens"' "$tmp/body"; echo $?)"
check "unknown model: 404" "$([ "$(post '{"model":"gpt-4","prompt":"x"}')" = 404 ] && is_error model_not_found; echo $?)"
check "n > 1: 400" "$([ "$(post "{\"model\":\"$MODEL_ID\",\"prompt\":\"x\",\"n\":2}")" = 400 ] && grep -q '"param":"n"' "$tmp/body"; echo $?)"
check "max_tokens past the limit: 400" "$([ "$(post "{\"model\":\"$MODEL_ID\",\"prompt\":\"x\",\"max_tokens\":5000}")" = 400 ] && is_error; echo $?)"
check "prompt + max_tokens past the context: 400" "$([ "$(post "{\"model\":\"$MODEL_ID\",\"prompt\":\"$(printf 'word %.0s' $(seq 700))\",\"max_tokens\":500}")" = 400 ] && is_error context_length_exceeded; echo $?)"
head -c 70000 /dev/zero | tr '\0' 'a' >"$tmp/big.txt"
printf '{"model":"%s","prompt":"%s"}' "$MODEL_ID" "$(cat "$tmp/big.txt")" >"$tmp/big.json"
check "body past --max-body-bytes: 413" "$([ "$(post "@$tmp/big.json")" = 413 ] && is_error; echo $?)"
check "unknown path: 404" "$([ "$(code "${AUTH[@]}" "$BASE/v1/nothing")" = 404 ] && is_error; echo $?)"
check "chat with a tool message: 400" "$([ "$(code "${AUTH[@]}" "$BASE/v1/chat/completions" -d "{\"model\":\"$MODEL_ID\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}")" = 400 ] && is_error; echo $?)"
check "still serving after the errors" "$([ "$(post "{\"model\":\"$MODEL_ID\",\"prompt\":\"Hello\",\"max_tokens\":4,\"temperature\":0}")" = 200 ] && grep -q '"finish_reason"' "$tmp/body"; echo $?)"

# ---- the openai client ----
timeout 900 "$VENV/bin/python" "$HERE/serve_clients.py" main "$PORT" "$KEY" "$QRT" "$MODEL"
check "openai client checks (above)" $?
check "metrics: Prometheus text with the KV and step series" "$(grep -q '^qrt_step_seconds_count [1-9]' <<<"$(curl -s --max-time 30 "${AUTH[@]}" "$BASE/metrics")" && grep -q '^[1-9]' <<<"$(metric qrt_kv_blocks_total)"; echo $?)"

kill -TERM "$SERVER_PID"
timeout 60 tail --pid="$SERVER_PID" -f /dev/null
wait "$SERVER_PID"
check "SIGTERM on an idle server: exit 0" $?

# ---- limits and shutdown ----
stop_check() {  # $1 = name: waits for the server to exit after the client sent SIGTERM
  timeout 120 tail --pid="$SERVER_PID" -f /dev/null
  wait "$SERVER_PID"
  local rc=$?
  check "$1: exit 0 after SIGTERM (got $rc)" "$([ "$rc" = 0 ]; echo $?)"
}
start_server shutdown --api-key "$KEY" --model-name m --max-seqs 1 --max-queue 1 --max-connections 5 \
  --ctx-size 512 --shutdown-timeout 120
timeout 300 "$VENV/bin/python" "$HERE/serve_clients.py" shutdown "$PORT" "$KEY" "$SERVER_PID"
check "limit and graceful shutdown checks (above)" $?
stop_check "graceful shutdown"
grep -q "SIGTERM" "$tmp/shutdown.err"
check "the shutdown is logged" $?

start_server cancel --api-key "$KEY" --model-name m --max-seqs 1 --ctx-size 4096 --shutdown-timeout 1
timeout 300 "$VENV/bin/python" "$HERE/serve_clients.py" cancel "$PORT" "$KEY" "$SERVER_PID" 1
check "shutdown timeout checks (above)" $?
stop_check "cancelling shutdown"
grep -q "grace period is over: 1 running requests cancelled" "$tmp/cancel.err"
check "the cancellation is logged" $?

[ "$fail" -eq 0 ] && echo "OK: e2e_serve"
exit "$fail"
