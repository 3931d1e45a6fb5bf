#!/usr/bin/env python3
"""Bounded load for tests/deploy/test_scale.sh.

usage: load.py URL N CONCURRENCY OUT.json [--kill PID --kill-after K --victim-metrics URL]

Sends N POST /v1/completions (every 5th one streamed), CONCURRENCY at a time,
each with a 60 s timeout. With --kill, once K requests have completed it waits
(up to 3 s) until the victim replica reports an active sequence on its own
/metrics, then sends it SIGTERM, so the signal lands with work in flight.

Each answer is classified:
  ok            200 whose JSON has choices[0].finish_reason (streams: the last
                data event has one and [DONE] follows)
  clean_error   a non-200 status whose body is an {"error": {...}} JSON object
                (or nginx's own 502/503/504 page)
  truncated     a 200 that does not parse or has no finish_reason
  transport     connection reset, incomplete read, timeout
Writes every result and a summary to OUT.json.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def main():
    url, n, conc, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    opts = dict(zip(sys.argv[5::2], sys.argv[6::2]))
    kill_pid = int(opts.get("--kill", 0))
    kill_after = int(opts.get("--kill-after", n // 3))
    victim_metrics = opts.get("--victim-metrics", "")
    u = urllib.parse.urlsplit(url)
    lock = threading.Lock()
    done = [0]
    killed = {}

    def active_sequences():
        try:
            with urllib.request.urlopen(victim_metrics, timeout=1) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("saserve_active_sequences "):
                        return int(float(line.split()[1]))
        except OSError:
            return -1
        return -1

    def maybe_kill():
        with lock:
            if not kill_pid or killed or done[0] < kill_after:
                return
            killed["pending"] = True
        deadline = time.monotonic() + 3
        act = active_sequences()
        while act < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
            act = active_sequences()
        os.kill(kill_pid, signal.SIGTERM)
        killed.update(at_completed=done[0], active_sequences=act, t=time.monotonic())

    def one(i):
        stream = i % 5 == 4
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": int(os.environ.get("MAX_TOKENS", "384")), "temperature": 0.8,
                           "seed": i, "stream": stream})
        t0 = time.monotonic()
        r = {"i": i, "stream": stream}
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            resp = c.getresponse()
            data = resp.read()
            c.close()
            r["status"] = resp.status
            r["bytes"] = len(data)
            text = data.decode("utf-8", "replace")
            if resp.status == 200:
                try:
                    if stream:
                        events = [ln[6:] for ln in text.split("\n") if ln.startswith("data: ")]
                        assert events and events[-1] == "[DONE]", "stream without [DONE]"
                        last = json.loads(events[-2])
                        assert last["choices"][0]["finish_reason"] in ("length", "stop")
                    else:
                        d = json.loads(text)
                        assert d["choices"][0]["finish_reason"] in ("length", "stop")
                    r["class"] = "ok"
                except (ValueError, KeyError, IndexError, AssertionError) as e:
                    r["class"] = "truncated"
                    r["why"] = repr(e)[:120]
            else:
                try:
                    d = json.loads(text)
                    r["class"] = "clean_error" if isinstance(d.get("error"), dict) else "unclean_error"
                except ValueError:
                    nginx_page = resp.status in (502, 503, 504) and "nginx" in text
                    r["class"] = "clean_error" if nginx_page else "unclean_error"
                r["why"] = text[:160]
        except (OSError, http.client.HTTPException) as e:
            r["class"] = "transport"
            r["why"] = repr(e)[:160]
        r["ms"] = round((time.monotonic() - t0) * 1000, 1)
        with lock:
            done[0] += 1
        maybe_kill()
        return r

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=conc) as ex:
        results = list(ex.map(one, range(n)))
    wall = time.monotonic() - t0
    classes = {}
    for r in results:
        classes[r["class"]] = classes.get(r["class"], 0) + 1
    lat = sorted(r["ms"] for r in results)
    summary = {"n": n, "concurrency": conc, "wall_s": round(wall, 2), "classes": classes,
               "statuses": {str(s): sum(1 for r in results if r.get("status") == s)
                            for s in sorted({r.get("status") for r in results if r.get("status")})},
               "p50_ms": lat[len(lat) // 2], "p95_ms": lat[min(len(lat) - 1, int(len(lat) * 0.95))],
               "killed": {k: v for k, v in killed.items() if k not in ("t", "pending")}}
    if "t" in killed:
        summary["killed"]["at_s"] = round(killed["t"] - t0, 2)
    with open(out, "w") as f:
        json.dump({"summary": summary, "results": results}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
