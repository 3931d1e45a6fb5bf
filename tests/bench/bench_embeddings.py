#!/usr/bin/env python3
"""bench_embeddings.py - make bench-embeddings: /v1/embeddings throughput against prefill.

Starts saserve (stories260K by default, --threads 2) on 127.0.0.1 and sends, for --seconds
each, from --clients concurrent keep-alive clients:
  * embeddings: POST /v1/embeddings with --batch inputs per request (story openings of about
    --words words each);
  * prefill: POST /v1/completions with the same inputs as prompts, max_tokens 1 (the nearest
    generation-side work: one prefill, one sampled token), prefix cache defeated by a
    per-request nonce at the start of every prompt (so both rows prefill every token).
Reports inputs/s, prompt tokens/s (the servers' own usage counts), latency p50/p99 and the
statuses, and the ratio of embedding tokens/s to prefill tokens/s measured in the same run
(absolute figures drift on a shared machine; the ratio is the figure to read).
Standard-library Python.

  python3 tests/bench/bench_embeddings.py [--seconds 5] [--clients 4] [--batch 8] [--model M]
"""
import argparse
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
WORDS = ("once upon a time there was a little girl named lily she loved to play outside in the sun "
         "with her dog max one day they found a big red ball in the park and ran after it").split()


def pct(v, q):
    s = sorted(v)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)] if s else 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def texts(n, words, salt):
    return ["%s %s" % (salt, " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words))) for i in range(n)]


def run_row(port, kind, seconds, clients, batch, words):
    lat, statuses, counts = [], {}, {"inputs": 0, "tokens": 0}
    lock = threading.Lock()
    stop_at = time.time() + seconds
    nonce = [0]

    def client(ci):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.time() < stop_at:
            with lock:
                nonce[0] += 1
                salt = "n%d" % nonce[0]
            inputs = texts(batch, words, salt)
            if kind == "embeddings":
                path, body = "/v1/embeddings", {"model": "llama", "input": inputs}
            else:
                path, body = "/v1/completions", {"prompt": inputs, "max_tokens": 1, "temperature": 0}
            t = time.time()
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            dt = time.time() - t
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    u = json.loads(data)["usage"]
                    lat.append(dt)
                    counts["inputs"] += batch
                    counts["tokens"] += u["prompt_tokens"]
        conn.close()

    t0 = time.time()
    th = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.time() - t0
    return {"kind": kind, "inputs_s": counts["inputs"] / wall, "tokens_s": counts["tokens"] / wall,
            "p50_ms": 1e3 * pct(lat, 0.5), "p99_ms": 1e3 * pct(lat, 0.99), "statuses": statuses,
            "tokens_per_input": counts["tokens"] / max(1, counts["inputs"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--words", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    shared = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--model", default=os.path.join(shared, "models", "stories260K", "stories260K.gguf"))
    ap.add_argument("--saserve", default=os.path.join(os.environ.get("BUILD", os.path.join(ROOT, "build")), "saserve"))
    a = ap.parse_args()
    port = free_port()
    srv = subprocess.Popen([a.saserve, "serve", "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
                            "--threads", "2", "--queue-max", "256"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        run_row(port, "embeddings", 1, a.clients, a.batch, a.words)  # warm-up
        print("model %s, %d clients, %d inputs per request, %.0f s per row, rows alternated %d times"
              % (os.path.basename(a.model), a.clients, a.batch, a.seconds, a.rounds))
        print("%-11s %10s %12s %9s %9s %s" % ("row", "inputs/s", "tokens/s", "p50 ms", "p99 ms", "statuses"))
        ratios = []
        for _ in range(a.rounds):
            rows = [run_row(port, k, a.seconds, a.clients, a.batch, a.words) for k in ("embeddings", "prefill")]
            for r in rows:
                print("%-11s %10.1f %12.1f %9.2f %9.2f %s" % (r["kind"], r["inputs_s"], r["tokens_s"], r["p50_ms"],
                                                           r["p99_ms"], r["statuses"]))
            ratios.append(rows[0]["tokens_s"] / max(1e-9, rows[1]["tokens_s"]))
        print("embedding tokens/s over prefill (max_tokens 1) tokens/s: %s"
              % ", ".join("%.2fx" % r for r in ratios))
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
