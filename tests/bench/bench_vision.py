#!/usr/bin/env python3
"""bench_vision.py - make bench-vision: the serving cost of phiDNN recreation.

Starts saserve (stories260K + config/models/phidnn-fmnist.gguf, --threads 2) on 127.0.0.1 and,
for every recreation mode, sends single-image UINT8 requests of Fashion-MNIST test images
(samples 1, no seed: fresh randomness as in production) for --seconds each (after a short
warm-up), first from 1 client, then from 8 concurrent clients (one keep-alive connection
each). Reports images/s, latency p50/p99 and every status seen, and the cost of each mode
relative to the bare classifier (off) as the ratio of images/s. Standard-library Python;
writes build/bench-results/vision.{json,md} and refreshes the README's bench-vision block.

  python3 tests/bench/bench_vision.py [--seconds 5] [--clients 1,8]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "robust"))
import oip  # noqa: E402


def pct(v, q):
    s = sorted(v)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)] if s else 0.0


def run(port, mode, clients, seconds, imgs):
    lat, status, lock = [], {}, threading.Lock()
    stop = time.perf_counter() + seconds

    def work(k):
        cl = oip.Client(port)
        i = k * 97
        mine, st_local = [], {}
        while time.perf_counter() < stop:
            st, _, dt = cl.infer([list(imgs[i % len(imgs)])], mode, "UINT8")
            mine.append(dt)
            st_local[st] = st_local.get(st, 0) + 1
            i += 1
        with lock:
            lat.extend(mine)
            for s, c in st_local.items():
                status[s] = status.get(s, 0) + c

    t = time.perf_counter()
    th = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    wall = time.perf_counter() - t
    ok = status.get(200, 0)
    return {"mode": mode, "clients": clients, "batch": 1, "requests": len(lat), "statuses": status,
            "seconds": round(wall, 2), "images_per_s": round(ok / wall, 1),
            "latency_p50_ms": round(pct(lat, 0.5) * 1000, 2), "latency_p99_ms": round(pct(lat, 0.99) * 1000, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--saserve", default=os.path.join(os.environ.get("BUILD", "build"), "saserve"))
    ap.add_argument("--llm", default=os.path.join(os.environ.get("SHARED", "../shared"),
                                                  "models/stories260K/stories260K.gguf"))
    ap.add_argument("--vision", default="config/models/phidnn-fmnist.gguf")
    ap.add_argument("--out", default=os.path.join(os.environ.get("BUILD", "build"), "bench-results", "vision"))
    a = ap.parse_args()
    imgs, _ = oip.load_test(1000)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    proc, port = oip.start_server(a.saserve, a.llm, a.vision, a.out + ".server.log", threads=a.threads)
    rows = []
    try:
        for mode in ("off", "identity", "sr", "inpaint"):
            run(port, mode, 1, 0.5, imgs)  # warm-up
            for c in [int(v) for v in a.clients.split(",")]:
                r = run(port, mode, c, a.seconds, imgs)
                rows.append(r)
                print(json.dumps(r), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    base = {r["clients"]: r["images_per_s"] for r in rows if r["mode"] == "off"}
    L = ["`make bench-vision` (`tests/bench/bench_vision.py`): single-image UINT8 requests (samples 1, fresh "
         "randomness), %g s per row after a warm-up, server `--threads %d` on 127.0.0.1, client = stdlib Python "
         "on the same 2 shared cores (so these are lower bounds on the server). Cost = images/s of `off` / images/s "
         "of the mode at the same concurrency." % (a.seconds, a.threads), "",
         "| mode | clients | requests | images/s | p50 (ms) | p99 (ms) | cost vs off | statuses |",
         "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cost = base[r["clients"]] / r["images_per_s"] if r["images_per_s"] else float("inf")
        r["cost_vs_off"] = round(cost, 2)
        L.append("| %s | %d | %d | %.1f | %.2f | %.2f | %.2fx | %s |" % (
            r["mode"], r["clients"], r["requests"], r["images_per_s"], r["latency_p50_ms"], r["latency_p99_ms"],
            cost, ", ".join("%s: %d" % kv for kv in sorted(r["statuses"].items()))))
    with open(a.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))
    subprocess.call([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "readme_block.py"),
                     "bench-vision", a.out + ".md"])
    bad = [r for r in rows if set(r["statuses"]) != {200}]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
