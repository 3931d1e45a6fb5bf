#!/usr/bin/env python3
"""blackbox.py - a query-limited, score-based black-box L-inf attack on saserve's running
phiDNN endpoint (POST /v2/models/phidnn-fmnist/infer on 127.0.0.1), standard library only.

The attack is Square Attack's random search (Andriushchenko et al., arXiv 1912.00049, L-inf):
start from vertical stripes of +-eps, then each iteration propose one random square of side
sqrt(p)*28 set to +-eps and keep it if the margin log p_y - max_{j!=y} log p_j (from the
probabilities the server answers) goes down; p follows the paper's halving schedule. An image
is adversarial at the first query whose answer's top label is wrong (for the random modes the
answer carries fresh randomness, which is what an attacker sees). Images are attacked in
parallel: CONCURRENCY client threads each own a slice of the images and send one batch
request per iteration holding the slice's still-unbroken candidates, so "queries per image"
is the number of candidate evaluations of that image (the clean query counts).

It doubles as a load test: it reports requests/s and images/s, p50/p99 request latency,
every status seen, and checks that /metrics counted every request and every image exactly
once (saserve_vision_requests_total / saserve_vision_images_total deltas) and that no answer
was a 5xx.

  blackbox.py --saserve build/saserve --llm ../shared/models/stories260K/stories260K.gguf \
      [--modes off,sr] [--eps 0.05,0.1,0.2] [--n 100] [--queries 1000] [--json out.json] [--check]
  blackbox.py --port 8080 ...          (attack an already running server instead)

--check prints PASS/FAIL lines (the make test use: every query 200 and counted once, no 5xx,
and at eps 0.2 adversarial examples found for recreate=off) and exits 1 on any FAIL.
"""
import argparse
import json
import math
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oip  # noqa: E402


def p_schedule(p_init, it, n_iters):
    i = int(it / n_iters * 10000)
    for lim, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                     (6000, 128), (8000, 256)):
        if i <= lim:
            return p_init / div
    return p_init / 512


def margin(probs, y):
    lp = [math.log(max(p, 1e-30)) for p in probs]
    other = max(v for j, v in enumerate(lp) if j != y)
    return lp[y] - other


def clip01(v):
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []
        self.status = {}
        self.requests = 0
        self.images = 0

    def add(self, st, dt, n):
        with self.lock:
            self.lat.append(dt)
            self.status[st] = self.status.get(st, 0) + 1
            self.requests += 1
            self.images += n


def attack_slice(port, mode, eps, xs, ys, queries, p_init, rng, stats, out):
    """Square-attack the images xs (lists of 784 floats) with labels ys; fills out[i]."""
    cl = oip.Client(port)
    n = len(xs)
    res = [{"queries": 0, "success": False, "clean_correct": None} for _ in range(n)]

    def query(cands):
        ims = [c for _, c in cands]
        st, probs, dt = cl.infer(ims, mode, "FP32")
        stats.add(st, dt, len(ims))
        if st != 200:
            raise RuntimeError("HTTP %d" % st)
        return probs

    # clean query, then the stripes initialisation
    probs = query(list(enumerate(xs)))
    active = []
    for i in range(n):
        res[i]["queries"] = 1
        ok = max(range(10), key=lambda j: probs[i][j]) == ys[i]
        res[i]["clean_correct"] = ok
        if not ok:
            res[i]["success"] = True  # already misclassified: counts as broken at 0 perturbation
        else:
            active.append(i)
    delta = {}
    cur = {}
    best = {}
    if active:
        cands = []
        for i in active:
            cols = [eps if rng.random() < 0.5 else -eps for _ in range(28)]
            d = [cols[k % 28] for k in range(784)]
            delta[i] = d
            cands.append((i, [clip01(xs[i][k] + d[k]) for k in range(784)]))
        probs = query(cands)
        still = []
        for (i, c), p in zip(cands, probs):
            res[i]["queries"] += 1
            best[i] = margin(p, ys[i])
            cur[i] = c
            if best[i] < 0:
                res[i]["success"] = True
            else:
                still.append(i)
        active = still
    it = 0
    while active and it < queries - 2:
        p = p_schedule(p_init, it, queries)
        side = max(1, min(27, int(round(math.sqrt(p * 784)))))
        cands, props = [], []
        for i in active:
            r0, c0 = rng.randrange(28 - side + 1), rng.randrange(28 - side + 1)
            v = eps if rng.random() < 0.5 else -eps
            d = list(delta[i])
            for r in range(r0, r0 + side):
                for c in range(c0, c0 + side):
                    d[r * 28 + c] = v
            props.append(d)
            cands.append((i, [clip01(xs[i][k] + d[k]) for k in range(784)]))
        probs = query(cands)
        still = []
        for (i, c), d, pr in zip(cands, props, probs):
            res[i]["queries"] += 1
            m = margin(pr, ys[i])
            if m < best[i]:
                best[i], delta[i], cur[i] = m, d, c
            if m < 0:
                res[i]["success"] = True
                linf = max(abs(a - b) for a, b in zip(c, xs[i]))
                res[i]["linf"] = linf
            else:
                still.append(i)
        active = still
        it += 1
    for i in range(n):
        out.append(res[i])


def wilson(k, n, z=1.96):
    if n == 0:
        return [0.0, 0.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def pct(v, q):
    if not v:
        return 0.0
    s = sorted(v)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)]


def run_attack(port, mode, eps, imgs, labels, queries, concurrency, p_init, seed):
    xs = [[b / 255.0 for b in im] for im in imgs]
    stats = Stats()
    out = []
    lock = threading.Lock()
    per = (len(xs) + concurrency - 1) // concurrency
    threads, errors = [], []

    def work(lo, hi, s):
        part = []
        try:
            attack_slice(port, mode, eps, xs[lo:hi], labels[lo:hi], queries, p_init, random.Random(s), stats, part)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            errors.append(repr(e))
        with lock:
            out.extend(part)

    cl = oip.Client(port)
    before = oip.vision_counts(cl)
    img_before = image_counts(cl)
    t = time.perf_counter()
    for k, lo in enumerate(range(0, len(xs), per)):
        th = threading.Thread(target=work, args=(lo, min(len(xs), lo + per), seed * 1000 + k))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    after = oip.vision_counts(cl)
    img_after = image_counts(cl)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    diff = {"%s/%s" % k: v for k, v in diff.items() if v}
    n = len(out)
    clean = sum(1 for r in out if r["clean_correct"])
    broken = sum(1 for r in out if r["clean_correct"] and r["success"])
    robust = clean - broken
    qs = [r["queries"] for r in out if r["clean_correct"] and r["success"]]
    return {
        "mode": mode, "eps": eps, "n": n, "queries_max": queries, "concurrency": concurrency, "seed": seed,
        "clean_correct": clean, "robust_correct": robust,
        "robust_accuracy": robust / n if n else 0.0, "robust_accuracy_ci95": wilson(robust, n),
        "attack_success_rate": broken / clean if clean else 0.0, "attack_success_ci95": wilson(broken, clean),
        "median_queries_success": sorted(qs)[len(qs) // 2] if qs else None,
        "requests": stats.requests, "images_queried": stats.images, "statuses": stats.status,
        "wall_s": round(wall, 2), "requests_per_s": round(stats.requests / wall, 1),
        "images_per_s": round(stats.images / wall, 1),
        "latency_p50_ms": round(pct(stats.lat, 0.5) * 1000, 2), "latency_p99_ms": round(pct(stats.lat, 0.99) * 1000, 2),
        "metrics_delta": diff, "metrics_images_delta": img_after.get(mode, 0) - img_before.get(mode, 0),
        "errors": errors,
    }


def image_counts(cl):
    import re
    st, raw = cl.get("/metrics")
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^saserve_vision_images_total\{[^}]*mode="([^"]+)"\} (\d+)$', raw.decode(), re.M)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--saserve", default=os.environ.get("SASERVE", "build/saserve"))
    ap.add_argument("--llm", default=os.environ.get("MODEL", os.path.join(os.environ.get("SHARED", "../shared"),
                                                                             "models/stories260K/stories260K.gguf")))
    ap.add_argument("--vision", default=os.environ.get("VISION_MODEL", "config/models/phidnn-fmnist.gguf"))
    ap.add_argument("--modes", default="off")
    ap.add_argument("--eps", default="0.2")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--first", type=int, default=0, help="first test image index")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--p-init", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--log", default="/tmp/saserve-blackbox.log")
    a = ap.parse_args()
    imgs, labels = oip.load_test(a.first + a.n)
    imgs, labels = imgs[a.first:], labels[a.first:]
    proc = None
    port = a.port
    if port is None:
        proc, port = oip.start_server(a.saserve, a.llm, a.vision, a.log)
    results = []
    try:
        for mode in a.modes.split(","):
            for eps in [float(e) for e in a.eps.split(",")]:
                r = run_attack(port, mode, eps, imgs, labels, a.queries, a.concurrency, a.p_init, a.seed)
                results.append(r)
                print("blackbox %-8s eps %.2f: n %d, clean %d, robust acc %.3f [%.3f, %.3f], success %.3f, "
                      "median queries %s, %d requests (%d images) in %.1f s = %.1f images/s, p50 %.1f ms, "
                      "p99 %.1f ms, statuses %s, metrics %s images +%d" % (
                          mode, eps, r["n"], r["clean_correct"], r["robust_accuracy"], *r["robust_accuracy_ci95"],
                          r["attack_success_rate"], r["median_queries_success"], r["requests"],
                          r["images_queried"], r["wall_s"], r["images_per_s"], r["latency_p50_ms"],
                          r["latency_p99_ms"], r["statuses"], r["metrics_delta"], r["metrics_images_delta"]),
                      flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.check:
        return 0
    passed = failed = 0

    def result(ok, desc):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(("PASS " if ok else "FAIL ") + desc)

    for r in results:
        tag = "%s eps %.2f" % (r["mode"], r["eps"])
        result(not r["errors"] and r["statuses"] == {200: r["requests"]},
               "%s: all %d requests answered 200 (statuses %s, errors %s)" % (tag, r["requests"], r["statuses"],
                                                                              r["errors"][:2]))
        result(not any(str(s).startswith("5") for s in r["statuses"]), "%s: no 5xx" % tag)
        result(r["metrics_delta"] == {"%s/200" % r["mode"]: r["requests"]},
               "%s: /metrics counted every request once (delta %s vs %d sent)" % (tag, r["metrics_delta"],
                                                                                 r["requests"]))
        result(r["metrics_images_delta"] == r["images_queried"],
               "%s: /metrics counted every image once (+%d vs %d sent)" % (tag, r["metrics_images_delta"],
                                                                          r["images_queried"]))
        if r["mode"] == "off" and abs(r["eps"] - 0.2) < 1e-9:
            broken = r["clean_correct"] - r["robust_correct"]
            result(broken > 0, "off eps 0.20: the attack finds adversarial examples (%d of %d correctly "
                               "classified, %d queries max)" % (broken, r["clean_correct"], r["queries_max"]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
