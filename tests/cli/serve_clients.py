"""Clients of a running `qrt serve` for tests/cli/e2e_serve.sh (loopback only, bounded in time).

    serve_clients.py main     PORT KEY QRT MODEL   the official openai client: completions, chat,
                                                   streaming, stop strings, greedy output equal to
                                                   `qrt run` alone and next to seven other requests,
                                                   a client that disconnects mid-stream
    serve_clients.py shutdown PORT KEY PID         connection limit, queue full, then SIGTERM:
                                                   the queued request ends with 503, new ones are
                                                   refused, the running one finishes
    serve_clients.py cancel   PORT KEY PID GRACE   SIGTERM: a request still running when the grace
                                                   period (--shutdown-timeout GRACE) ends is
                                                   cancelled: an error event, then [DONE]

Prints one line per check; exits 1 when any fails.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


class Server:
    def __init__(self, port, key):
        self.port, self.key = port, key

    def request(self, method, path, body=None, timeout=120):
        """(status, body text) over a fresh connection that is closed after the response."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": "Bearer " + self.key, "Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, text

    def metrics(self):
        status, text = self.request("GET", "/metrics", timeout=30)
        values = {}
        for line in text.splitlines():
            m = re.match(r"^(\S+) (\S+)$", line)
            if m:
                values[m.group(1)] = float(m.group(2))
        return values

    def wait_metrics(self, cond, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            m = self.metrics()
            if cond(m):
                return m
            time.sleep(0.05)
        return self.metrics()

    def open_stream(self, body):
        """A streaming request on its own socket; returns an iterator of decoded SSE events."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("POST", "/v1/completions" if "prompt" in body else "/v1/chat/completions",
                  body=json.dumps(dict(body, stream=True)),
                  headers={"Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        sock = c.sock
        r = c.getresponse()

        def events():
            while True:
                line = r.fp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    data = line[6:].strip()
                    if data == b"[DONE]":
                        yield None
                        return
                    yield json.loads(data)
        return sock, r, events()


def qrt_run(qrt, model, prompt, n, chat=False):
    args = [qrt, "run", "-m", model, "-p", prompt, "-n", str(n), "-t", "2"] + (["--chat"] if chat else [])
    out = subprocess.run(args, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()[:-1]  # qrt run ends its text with a newline


def main_tests(port, key, qrt, model):
    from openai import OpenAI, APIStatusError
    server = Server(port, key)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=300)
    model_id = client.models.list().data[0].id
    check(bool(model_id), f"models.list: {model_id}")

    story = "Once upon a time, in a small village by the sea,"
    question = "What is the capital of France?"
    ref_story = qrt_run(qrt, model, story, 48)
    ref_chat = qrt_run(qrt, model, question, 24, chat=True)

    r = client.completions.create(model=model_id, prompt=story, max_tokens=48, temperature=0)
    check(r.choices[0].text == ref_story, f"completion equals qrt run: {r.choices[0].text!r}")
    check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 48 and
          r.usage.total_tokens == r.usage.prompt_tokens + 48 and r.choices[0].finish_reason == "length",
          f"completion usage and finish_reason: {r.usage}, {r.choices[0].finish_reason}")

    c = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": question}],
                                       max_tokens=24, temperature=0)
    text = c.choices[0].message.content
    check(text == ref_chat and "Paris" in text, f"chat equals qrt run --chat: {text!r}")
    check(c.choices[0].message.role == "assistant" and c.object == "chat.completion", "chat response shape")

    pieces, usage, finish, chunks = [], None, None, 0
    for chunk in client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": question}],
                                                max_tokens=24, temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        chunks += 1
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    check("".join(pieces) == ref_chat and chunks > 3, f"streamed chat equals qrt run --chat in {chunks} chunks")
    check(usage is not None and usage.completion_tokens > 0 and finish in ("stop", "length"),
          f"streamed chat usage {usage} and finish_reason {finish}")

    pieces = [ch.choices[0].text for ch in client.completions.create(model=model_id, prompt=story, max_tokens=48,
                                                                      temperature=0, stream=True) if ch.choices]
    check("".join(pieces) == ref_story, "streamed completion equals qrt run")

    # A stop string from the middle of the greedy text: the text ends before it, no part leaks.
    words = ref_story.split()
    stop = " " + words[len(words) // 2]
    pieces, finish = [], None
    for ch in client.completions.create(model=model_id, prompt=story, max_tokens=48, temperature=0, stream=True,
                                        stop=[stop, "NEVER SEEN"]):
        if ch.choices:
            pieces.append(ch.choices[0].text)
            finish = ch.choices[0].finish_reason or finish
    expect = ref_story[:ref_story.index(stop)]
    check("".join(pieces) == expect and finish == "stop", f"stop string {stop!r}: {''.join(pieces)!r}")

    # Seeded sampling is reproducible.
    a = client.completions.create(model=model_id, prompt=story, max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    b = client.completions.create(model=model_id, prompt=story, max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    check(a.choices[0].text == b.choices[0].text, "same seed, same sampled text")

    # Greedy output unchanged while seven other requests run in the same batch. They ask for far
    # more tokens than the reference takes (900 against 48, one token each per step), and leave
    # (close their streams) once it is back, so none can end before it on any machine.
    started = threading.Barrier(8, timeout=120)
    reference_done = threading.Event()
    finished_early = []

    def background(i):
        stream = client.completions.create(model=model_id, prompt=f"Request {i}: tell me about the number {i}.",
                                           max_tokens=900, temperature=0.8, seed=i, stream=True,
                                           extra_body={"ignore_eos": True})
        first = True
        for chunk in stream:
            if first:
                started.wait()
                first = False
            if chunk.choices and chunk.choices[0].finish_reason:
                finished_early.append(i)
            if reference_done.is_set():
                break
        stream.close()
    threads = [threading.Thread(target=background, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    started.wait()  # all seven are generating
    m = server.metrics()
    r = client.completions.create(model=model_id, prompt=story, max_tokens=48, temperature=0)
    reference_done.set()
    for t in threads:
        t.join(timeout=300)
    check(r.choices[0].text == ref_story, f"completion next to seven others equals qrt run: {r.choices[0].text!r}")
    check(m.get("qrt_requests_running", 0) >= 7 and not finished_early and not any(t.is_alive() for t in threads),
          f"the seven were running throughout ({m.get('qrt_requests_running')} running when it was sent, "
          f"{len(finished_early)} finished before it)")
    m = server.wait_metrics(lambda m: m["qrt_requests_running"] == 0, 60)
    check(m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_in_use"] == 0,
          f"the seven that left were cancelled: running {m['qrt_requests_running']}, "
          f"KV blocks in use {m['qrt_kv_blocks_in_use']}")

    # A client that disconnects mid-stream: its sequence is cancelled and its blocks freed.
    before = server.metrics()
    sock, resp, events = server.open_stream({"model": model_id, "prompt": story, "max_tokens": 400,
                                             "ignore_eos": True, "temperature": 0})
    for _, _ in zip(range(3), events):
        pass
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    m = server.wait_metrics(lambda m: m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_in_use"] == 0 and
                            m['qrt_requests_total{result="cancelled"}'] > before['qrt_requests_total{result="cancelled"}'],
                            30)
    generated = m["qrt_generated_tokens_total"] - before["qrt_generated_tokens_total"]
    check(m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_in_use"] == 0 and
          m['qrt_requests_total{result="cancelled"}'] == before['qrt_requests_total{result="cancelled"}'] + 1 and
          generated < 400,
          f"disconnect frees the sequence: running {m['qrt_requests_running']}, KV blocks in use "
          f"{m['qrt_kv_blocks_in_use']}, {generated:.0f} of 400 tokens generated")

    try:
        client.completions.create(model="not-this-one", prompt="x", max_tokens=1)
        check(False, "unknown model through the openai client")
    except APIStatusError as e:
        check(e.status_code == 404, f"unknown model through the openai client: {e.status_code}")


def shutdown_tests(port, key, pid):
    server = Server(port, key)
    # The connection limit (--max-connections 5): five idle keep-alive connections, then a sixth.
    idle = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        idle.append(s)
    status, body = server.request("GET", "/health")
    check(status == 503 and "too_many_connections" in body, f"connection past the limit: {status} {body}")
    for s in idle:
        s.close()
    time.sleep(0.3)
    status, _ = server.request("GET", "/health")
    check(status == 200, f"served again once connections close: {status}")

    # --max-seqs 1 --max-queue 1: one runs, one waits, the next is refused.
    running = server.open_stream({"model": "m", "prompt": "A story:", "max_tokens": 500, "ignore_eos": True,
                                  "temperature": 0})
    first = next(running[2])
    check(first is not None and "choices" in first, "the first request runs")
    queued = server.open_stream({"model": "m", "prompt": "Waiting:", "max_tokens": 8, "temperature": 0})
    m = server.wait_metrics(lambda m: m["qrt_requests_queued"] == 1, 60)
    check(m["qrt_requests_running"] == 1 and m["qrt_requests_queued"] == 1, "one running, one queued")
    status, body = server.request("POST", "/v1/completions", {"model": "m", "prompt": "x", "max_tokens": 4})
    check(status == 503 and "server_overloaded" in body, f"queue full: {status} {body}")

    # SIGTERM: the queued request ends at once, new ones are refused, the running one finishes.
    os.kill(pid, signal.SIGTERM)
    q = list(queued[2])
    check(q and q[0] is not None and "error" in q[0] and q[-1] is None,
          f"the queued request ends with an error event: {q[:1]}")
    try:
        status, body = server.request("POST", "/v1/completions", {"model": "m", "prompt": "x", "max_tokens": 4},
                                      timeout=10)
        check(status == 503 and "shutting_down" in body, f"a new request while shutting down: {status}")
    except OSError as e:
        check(False, f"a new request while shutting down: {e} (the server should still answer 503)")
    events = [first] + list(running[2])
    text = "".join(e["choices"][0]["text"] for e in events if e and e.get("choices"))
    reasons = [e["choices"][0]["finish_reason"] for e in events if e and e.get("choices")]
    check(events[-1] is None and reasons[-1] == "length" and not any(e and "error" in e for e in events) and
          len(text) > 0, "the running request finishes normally")


def cancel_tests(port, key, pid, grace):
    # 4000 tokens cannot be generated within the grace period on any CPU this runs on, so the
    # request is still running when the grace period ends, however fast or slow the machine.
    server = Server(port, key)
    max_tokens = 4000
    running = server.open_stream({"model": "m", "prompt": "A long story:", "max_tokens": max_tokens,
                                  "ignore_eos": True, "temperature": 0})
    first = next(running[2])
    check(first is not None and "choices" in first, "the request runs")
    os.kill(pid, signal.SIGTERM)
    t0 = time.time()
    events = [first] + list(running[2])
    seconds = time.time() - t0
    errors = [e["error"] for e in events if e and "error" in e]
    tokens = [e for e in events if e and e.get("choices")]
    check(len(events) >= 2 and events[-1] is None and events[-2] is not None and "error" in events[-2],
          f"the stream ends with an error event, then [DONE] (last events: {events[-2:]})")
    check(len(errors) == 1 and errors[0].get("code") == "shutting_down" and "shutting down" in errors[0]["message"],
          f"the error says the server is shutting down: {errors}")
    check(not any(e["choices"][0].get("finish_reason") for e in tokens) and len(tokens) < max_tokens,
          f"the request did not finish: {len(tokens)} of {max_tokens} tokens, no finish_reason")
    # A bound for a stuck shutdown, not a speed test: the grace period plus a minute.
    check(seconds < grace + 60, f"the stream ended {seconds:.1f} s after SIGTERM (grace {grace} s)")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "main":
        main_tests(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    elif what == "shutdown":
        shutdown_tests(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        cancel_tests(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)
