"""N concurrent streaming clients against an OpenAI-compatible /v1/completions endpoint on
loopback, for bench/serve_load.sh. Standard library only: the load generator shares the machine
with the server, so it must cost little.

    serve_load_client.py --port P [--clients N] [--duration S] [--max-tokens M] [--max-requests R]
                         [--model ID] [--api-key KEY]

Each client sends streaming requests back to back. Every request has its own prompt (a counter at
the front, so no server can reuse an earlier prompt's cache), greedy sampling and ignore_eos, so
it runs to max_tokens. At the end of the window (--duration seconds from the start) every client
closes its connection, which cancels the request it has running: the window holds N streams all
the way, with no tail of fewer streams. Bounded: at most --max-requests requests in all.

Counted inside the window: tokens = streamed events that carry text (one per token that completes
text, for either server), tokens_per_s = tokens / window. Per request: time to first token (from
sending the request) and the gaps between its streamed tokens (inter-token latency). failed = a
status other than 200, an error event, or a stream that ended without [DONE] before the window
did. Prints one JSON line.
"""
import argparse
import http.client
import json
import socket
import threading
import time

TOPICS = ["the sea", "a lighthouse", "an old map", "the winter market", "a clockmaker", "the mountain road",
          "a lost letter", "the night train"]


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def one_request(args, prompt, deadline, out):
    """Streams one request until it ends or the window does; appends its record to `out`.
    Returns False when it failed, with the reason in the record's "error"."""
    body = {"model": args.model, "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "cache_prompt": False}
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=max(60.0, deadline - t0 + 60))
    record = {"ttft": None, "gaps": [], "tokens": 0, "done": False, "error": None}
    out.append(record)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            record["error"] = f"HTTP {resp.status}: {resp.read()[:300].decode(errors='replace')}"
            return False
        last = None
        while True:
            line = resp.fp.readline()
            now = time.perf_counter()
            if now >= deadline:
                return True  # the window is over: closing the connection cancels the request
            if not line:
                record["error"] = "the stream ended without [DONE]"
                return False
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                record["done"] = True
                return True
            event = json.loads(data)
            if "error" in event:
                record["error"] = "error event: " + json.dumps(event["error"])[:300]
                return False
            if any(c.get("text") for c in event.get("choices") or []):
                if last is None:
                    record["ttft"] = now - t0
                else:
                    record["gaps"].append(now - last)
                last = now
                record["tokens"] += 1
    except (OSError, http.client.HTTPException, ValueError) as e:
        if time.perf_counter() >= deadline:
            return True
        record["error"] = f"{type(e).__name__}: {e}"
        return False
    finally:
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-requests", type=int, default=10000)
    ap.add_argument("--model", default="bench")
    ap.add_argument("--api-key", default="")
    args = ap.parse_args()

    records, failed, counter, lock = [], [0], [0], threading.Lock()
    t_start = time.perf_counter()
    deadline = t_start + args.duration

    def client():
        while time.perf_counter() < deadline:
            with lock:
                n = counter[0]
                if n >= args.max_requests:
                    return
                counter[0] += 1
            prompt = f"{n} Write a short story about {TOPICS[n % len(TOPICS)]}. Once upon a time,"
            local = []
            ok = one_request(args, prompt, deadline, local)
            with lock:
                records.extend(local)
                if not ok:
                    failed[0] += 1
            if not ok:
                time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    window = min(time.perf_counter(), deadline) - t_start
    tokens = sum(r["tokens"] for r in records)
    gaps = [g for r in records for g in r["gaps"]]
    ttfts = [r["ttft"] for r in records if r["ttft"] is not None]
    print(json.dumps({
        "clients": args.clients, "seconds": round(window, 2), "requests": len(records),
        "completed": sum(r["done"] for r in records), "failed": failed[0], "tokens": tokens,
        "tokens_per_s": round(tokens / window, 2) if window > 0 else 0,
        "ttft_p50_ms": round(1000 * percentile(ttfts, 50), 1), "ttft_p99_ms": round(1000 * percentile(ttfts, 99), 1),
        "itl_p50_ms": round(1000 * percentile(gaps, 50), 2), "itl_p99_ms": round(1000 * percentile(gaps, 99), 2),
        # Why the first failed request failed (null when none did): a server's answer to read.
        "first_error": next((r["error"] for r in records if r["error"]), None),
    }))


if __name__ == "__main__":
    main()
