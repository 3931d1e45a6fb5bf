#!/usr/bin/env python3
"""Load generator for saserve (real HTTP on 127.0.0.1, stdlib only).

N concurrent clients each send `requests` completions (fixed prompt,
max_tokens, optional streaming), bounded in count and time. Reports
aggregate generated tokens per second, time to first token and latency
percentiles, and the status codes seen. With --json, one JSON object.

  loadgen.py --port 8080 --clients 8 --requests 4 --max-tokens 64 [--stream]
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def one_request(args, body, out):
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
    try:
        conn.request("POST", "/v1/completions" + args.query, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        ttft = None
        tokens = 0
        if resp.status == 200 and args.stream:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if ttft is None and any(c.get("text") for c in ev.get("choices", [])):
                    ttft = time.monotonic() - t0
                if "usage" in ev:
                    tokens = ev["usage"]["completion_tokens"]
        else:
            payload = resp.read()
            if resp.status == 200:
                tokens = json.loads(payload)["usage"]["completion_tokens"]
        out.append({"status": resp.status, "latency": time.monotonic() - t0, "ttft": ttft, "tokens": tokens})
    except Exception as e:  # a refused or broken connection is a result too
        out.append({"status": "error:" + type(e).__name__, "latency": time.monotonic() - t0, "ttft": None, "tokens": 0})
    finally:
        conn.close()


def client(args, idx, out, deadline):
    for r in range(args.requests):
        if time.monotonic() > deadline:
            return
        prompt = args.prompt
        if args.prompt_ids:  # a prompt of exactly N tokens: BOS then N-1 fixed ids
            prompt = [1] + [100 + (i * 37) % 5000 for i in range(args.prompt_ids - 1)]
        req = {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0.8,
               "seed": idx * 1000 + r, "stream": args.stream}
        req.update(json.loads(args.extra))
        body = json.dumps(req)
        one_request(args, body, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--requests", type=int, default=4, help="per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="Once upon a time, in a small town by the sea,")
    ap.add_argument("--prompt-ids", type=int, default=0, help="send a token-id prompt of exactly N tokens")
    ap.add_argument("--extra", default="{}", help="JSON object merged into every request body")
    ap.add_argument("--query", default="", help="query string for the path, e.g. ?share=on")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadgen: loopback only")
    out = []
    deadline = time.monotonic() + args.max_seconds
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(args, i, out, deadline)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ok = [r for r in out if r["status"] == 200]
    statuses = {}
    for r in out:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    res = {
        "clients": args.clients, "requests": len(out), "ok": len(ok), "statuses": statuses,
        "stream": args.stream, "max_tokens": args.max_tokens, "seconds": round(wall, 3),
        "generated_tokens": sum(r["tokens"] for r in ok),
        "tokens_per_second": round(sum(r["tokens"] for r in ok) / wall, 2) if wall > 0 else 0,
        "latency_p50": pct(lat, 50), "latency_p99": pct(lat, 99),
        "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99),
        "latency_mean": statistics.mean(lat) if lat else None,
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"N={args.clients}: {res['ok']}/{res['requests']} ok, {res['generated_tokens']} tokens in "
              f"{wall:.2f} s = {res['tokens_per_second']} tok/s; latency p50 {res['latency_p50']} p99 {res['latency_p99']}; "
              f"ttft p50 {res['ttft_p50']} p99 {res['ttft_p99']}; statuses {statuses}")


if __name__ == "__main__":
    main()
