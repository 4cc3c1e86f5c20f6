#!/usr/bin/env bash
# `qrt serve` under load next to llama.cpp's llama-server on the same GGUF, same threads, same
# machine, loopback only, alternating in one run: N concurrent streaming clients for S seconds
# against each (bench/serve_load_client.py), then one client against each (the single-stream
# figure). Prints aggregate tokens/s, p50 / p99 time to first token and inter-token latency, and
# failed requests, per server and case, and the ratios qrt / llama-server at N streams and
# qrt at N streams / qrt at one.
#
#   bench/serve_load.sh [MODEL] [--threads T] [--clients 8] [--duration 30] [--max-tokens 256]
#                       [--reps 1] [--json FILE] [--device cpu|cuda:N] [--qrt BIN] [--qrt-only]
#
# --device cuda:0 serves on the GPU (the batched engine's KV pool in GPU memory) and runs qrt alone:
# the llama-server peer here is the CPU build, so there is no peer on the GPU (--qrt-only says the
# same for the CPU). MODEL may then be any model qrt serves (a GGUF, or a Hugging Face folder with
# its tokenizer.json); --qrt names the binary (scripts/gpu-check.sh: build-gpu/qrt).
#
# Both servers get the same sequence slots (N), the same context per sequence (prompt + max-tokens,
# rounded up), and T threads. The peer: $LLAMA_SERVER if set, else llama-server built once by
# bench/peers/llamacpp.sh (the llama.cpp sources of the llama-cpp-python sdist; about 10 minutes
# on 2 cores the first time). qrt is build/qrt (scripts/build.sh) unless --qrt. Bounded: every
# case ends after S seconds (its running requests are cancelled), at most 10000 requests each,
# and both servers are killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="" THREADS="$(nproc)" CLIENTS=8 DURATION=30 MAX_TOKENS=256 REPS=1 JSON="" DEVICE="" QRT=build/qrt QRT_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --max-tokens) MAX_TOKENS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --qrt) QRT="$2"; shift 2 ;;
    --qrt-only) QRT_ONLY=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "serve_load: unknown option $1" >&2; exit 2 ;;
    *) MODEL="$1"; shift ;;
  esac
done
for v in THREADS CLIENTS DURATION MAX_TOKENS REPS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "serve_load: --${v,,} ${!v}: expected a positive integer" >&2; exit 2; }
done
[ -n "$MODEL" ] || MODEL="$(scripts/fetch-model.sh)"
[ -e "$MODEL" ] || { echo "serve_load: $MODEL: no such model" >&2; exit 2; }
if [ "$QRT" = build/qrt ]; then [ -x build/qrt ] || scripts/build.sh >&2; fi
[ -x "$QRT" ] || { echo "serve_load: $QRT: no qrt binary" >&2; exit 2; }
case "$DEVICE" in ""|cpu) ;; *) QRT_ONLY=1 ;; esac  # the llama-server peer is the CPU build
SERVERS=(qrt); [ "$QRT_ONLY" = 1 ] || SERVERS+=(llama)
[ "$QRT_ONLY" = 1 ] || LLAMA_SERVER="${LLAMA_SERVER:-$(bench/peers/llamacpp.sh llama-server)}"

# Context per sequence: the prompts are about 20 tokens.
CTX=$(( (MAX_TOKENS + 64 + 255) / 256 * 256 ))
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {  # $1 = pid, $2 = port, $3 = log: until /health answers 200 (5 minutes at most)
  for _ in $(seq 1500); do
    kill -0 "$1" 2>/dev/null || { echo "serve_load: the server exited: $(tail -n 5 "$3")" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$2/health")" = 200 ] && return 0
    sleep 0.2
  done
  echo "serve_load: the server on port $2 did not become ready: $(tail -n 5 "$3")" >&2; exit 1
}

QRT_PORT="$(free_port)"
"$QRT" serve -m "$MODEL" --host 127.0.0.1 --port "$QRT_PORT" -t "$THREADS" --max-seqs "$CLIENTS" \
  --ctx-size "$CTX" --max-queue "$CLIENTS" --model-name bench ${DEVICE:+--device "$DEVICE"} >"$tmp/qrt.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-1]}" "$QRT_PORT" "$tmp/qrt.log"
grep -m1 'backends:' "$tmp/qrt.log" || true
if [ "$QRT_ONLY" = 0 ]; then
  LLAMA_PORT="$(free_port)"
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" -t "$THREADS" -tb "$THREADS" -np "$CLIENTS" \
    -c $((CTX * CLIENTS)) --no-kv-unified --cont-batching --no-webui --alias bench >"$tmp/llama.log" 2>&1 &
  pids+=($!)
  wait_ready "${pids[-1]}" "$LLAMA_PORT" "$tmp/llama.log"
fi

load() {  # $1 = port, $2 = clients: one JSON line
  python3 bench/serve_load_client.py --port "$1" --clients "$2" --duration "$DURATION" \
    --max-tokens "$MAX_TOKENS" --model bench
  sleep 2  # the cancelled requests leave both servers idle before the next case
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Warm-up: one short request each (page in the weights, first-touch allocations).
python3 bench/serve_load_client.py --port "$QRT_PORT" --clients 1 --duration 3 --max-tokens 16 >/dev/null
[ "$QRT_ONLY" = 1 ] || python3 bench/serve_load_client.py --port "$LLAMA_PORT" --clients 1 --duration 3 --max-tokens 16 >/dev/null

echo "model $MODEL, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)${DEVICE:+, qrt on $DEVICE}"
echo "$CLIENTS streams and 1 stream, ${DURATION} s each, max_tokens $MAX_TOKENS, ignore_eos, greedy; $REPS alternating rep(s)"
declare -A runs
for rep in $(seq "$REPS"); do
  order=("${SERVERS[@]}"); [ $((rep % 2)) = 0 ] && [ "$QRT_ONLY" = 0 ] && order=(llama qrt)  # alternate: drift hits both
  for n in "$CLIENTS" 1; do
    for who in "${order[@]}"; do
      port="$QRT_PORT"; [ "$who" = llama ] && port="$LLAMA_PORT"
      line="$(load "$port" "$n")"
      runs["$who,$n"]+="$line"$'\n'
      printf '  rep %d  %-5s %2d streams: %s\n' "$rep" "$who" "$n" "$line"
    done
  done
done

rows=()
declare -A rate
# A failed request's reason is in its line's first_error; the server's own last words follow.
all_lines="${runs[*]}"
if [[ "$all_lines" == *'"first_error": "'* ]]; then
  echo "some requests failed; the end of qrt serve's log:"
  tail -n 15 "$tmp/qrt.log"
fi
echo
printf '%-22s %10s %10s %10s %10s %10s %8s\n' "" "tokens/s" "TTFT p50" "TTFT p99" "ITL p50" "ITL p99" "failed"
for n in "$CLIENTS" 1; do
  for who in "${SERVERS[@]}"; do
    lines="${runs[$who,$n]%$'\n'}"
    med() { while read -r l; do field "$l" "$1"; done <<<"$lines" | median; }
    tps="$(med tokens_per_s)" t50="$(med ttft_p50_ms)" t99="$(med ttft_p99_ms)" i50="$(med itl_p50_ms)" i99="$(med itl_p99_ms)"
    failed="$(while read -r l; do field "$l" failed; done <<<"$lines" | awk '{s+=$1} END {print s}')"
    rate["$who,$n"]="$tps"
    name="qrt serve"; [ "$who" = llama ] && name="llama-server"
    printf '%-22s %10.1f %8.0f ms %8.0f ms %8.1f ms %8.1f ms %8d\n' "$name, $n stream(s)" "$tps" "$t50" "$t99" "$i50" "$i99" "$failed"
    rows+=("{\"server\": \"$who\", \"streams\": $n, \"tokens_per_s\": $tps, \"ttft_p50_ms\": $t50, \"ttft_p99_ms\": $t99, \"itl_p50_ms\": $i50, \"itl_p99_ms\": $i99, \"failed\": $failed, \"runs\": [$(paste -sd, <<<"$lines")]}")
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo
[ "$QRT_ONLY" = 1 ] || echo "qrt / llama-server at $CLIENTS streams: $(ratio "${rate[qrt,$CLIENTS]}" "${rate[llama,$CLIENTS]}")"
echo "qrt at $CLIENTS streams / qrt at 1 stream: $(ratio "${rate[qrt,$CLIENTS]}" "${rate[qrt,1]}")"
[ "$QRT_ONLY" = 1 ] || echo "llama-server at $CLIENTS streams / at 1 stream: $(ratio "${rate[llama,$CLIENTS]}" "${rate[llama,1]}")"

if [ -n "$JSON" ]; then
  {
    peer="llama.cpp llama-server (${LLAMA_SERVER:-})"; [ "$QRT_ONLY" = 1 ] && peer=none
    echo "{\"model\": \"$(basename "$MODEL")\", \"threads\": $THREADS, \"clients\": $CLIENTS, \"duration_s\": $DURATION,"
    echo " \"device\": \"${DEVICE:-cpu}\", \"max_tokens\": $MAX_TOKENS, \"peer\": \"$peer\","
    echo " \"rows\": [$(IFS=,; echo "${rows[*]}")]}"
  } >"$JSON"
  echo "wrote $JSON"
fi
