#!/usr/bin/env python3
"""httpcheck.py - small assertions for tests/scripts/test_http.sh (stdlib only).

  httpcheck.py true EXPR FILE...    exit 0 if the Python expression EXPR is
                                    true, else print what it saw and exit 1
  httpcheck.py value EXPR FILE...   print the value of EXPR
  httpcheck.py metric FILE SERIES   print one sample of a Prometheus text file
                                    (SERIES as written, e.g.
                                    'saserve_kv_bytes_used{kind="k"}'); a bare
                                    family name sums its series
  httpcheck.py reconcile MANIFEST PORT METRICS_FILE
                                    compare the server's counters with what
                                    the client saw (one PASS/FAIL line each)

In EXPR, d0, d1, ... are the files: a JSON body is parsed; a body that looks
like server-sent events becomes the list of its events' JSON (without
[DONE]); a file ending in .prom becomes {series: value}. d is d0. Helpers:
text(x) (the generated text of a body or an event list, choice 0), texts(x)
(per choice index), cache_ok(c) (the byte identities of a cache object),
final(x) (the event holding the top-level usage), prom_sum(m, family).
"""
import json
import math
import re
import sys


def _no_constant(name):
    raise ValueError("non-standard JSON constant %s" % name)


def parse_sse(text):
    events = []
    for block in text.split("\n\n"):
        data = [l[6:] if l.startswith("data: ") else l[5:] for l in block.split("\n") if l.startswith("data:")]
        if data:
            payload = "\n".join(data)
            if payload != "[DONE]":
                events.append(json.loads(payload, parse_constant=_no_constant))
    return events


def parse_prom(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)(?:\s+\d+)?$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def load(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if path.endswith(".prom"):
        return parse_prom(text)
    s = text.lstrip()
    if s.startswith("data:") or s.startswith(":"):
        return parse_sse(text)
    if not s:
        return None
    return json.loads(text, parse_constant=_no_constant)


def prom_sum(m, family):
    return sum(v for k, v in m.items() if k == family or k.startswith(family + "{"))


def _choice_text(ch):
    if "text" in ch:
        return ch["text"]
    if "message" in ch:
        return ch["message"].get("content") or ""
    if "delta" in ch:
        return ch["delta"].get("content") or ""
    return ""


def texts(x):
    """{choice index: text} of a whole body or of an event list."""
    out = {}
    items = x if isinstance(x, list) else [x]
    for ev in items:
        for ch in ev.get("choices", []):
            out[ch["index"]] = out.get(ch["index"], "") + _choice_text(ch)
    return out


def text(x):
    return texts(x).get(0, "")


def final(x):
    """The object with the request's top-level usage/cache/timings."""
    if isinstance(x, dict):
        return x
    with_usage = [ev for ev in x if "usage" in ev]
    return with_usage[-1] if with_usage else {}


def cache_ok(c):
    """The identities every cache object satisfies (all figures token-exact)."""
    without = c["kv_bytes_without_sharing"]
    ok = (c["kv_bytes"] == c["k_bytes"] + c["v_bytes"]
          and c["kv_bytes_saved"] == without - c["kv_bytes"]
          and without == 2 * c["v_bytes"]
          and c["k_bytes"] * c["layers"] == c["v_bytes"] * (c["layers"] - c["sharing_layers"])
          and (c["tokens"] == 0 or c["v_bytes"] % (c["tokens"] * c["layers"]) == 0)
          and abs(c["kv_saved_ratio"] - (c["kv_bytes_saved"] / without if without else 0)) < 1e-6)
    # page-exact figures: K pages only in computing layers, pages cover the tokens,
    # a page is block_tokens positions of one layer's K or V
    L, S, B, pages = c["layers"], c["sharing_layers"], c["block_tokens"], c["k_pages"] + c["v_pages"]
    ok = ok and c["k_pages"] * L == c["v_pages"] * (L - S) and c["v_pages"] * B >= c["tokens"] * L
    if pages and c["tokens"]:
        page_bytes = c["kv_bytes_paged"] // pages
        ok = ok and c["kv_bytes_paged"] == pages * page_bytes and page_bytes * c["tokens"] * L >= c["v_bytes"] * B
    if c["shared_attention"]:
        spans = sum(int(b) - int(a) + 1 for a, b in (s.split("-") for s in c["spans"]))
        ok = ok and c["sharing_layers"] == spans
    else:
        ok = ok and c["sharing_layers"] == 0 and c["kv_bytes_saved"] == 0
    return ok


def paged_exact(c):
    """One sequence's page counts: ceil(tokens / block) blocks of (L - S) K and L V pages."""
    blocks = -(-c["tokens"] // c["block_tokens"])
    return c["k_pages"] == blocks * (c["layers"] - c["sharing_layers"]) and c["v_pages"] == blocks * c["layers"]


def usage_core(u):
    """usage without prompt_tokens_details (cached_tokens depends on what ran before)."""
    return {k: v for k, v in u.items() if k != "prompt_tokens_details"}


def env(files):
    ns = {"text": text, "texts": texts, "final": final, "cache_ok": cache_ok, "prom_sum": prom_sum,
          "paged_exact": paged_exact, "usage_core": usage_core,
          "json": json, "re": re, "math": math}
    docs = [load(p) for p in files]
    for i, v in enumerate(docs):
        ns["d%d" % i] = v
    ns["d"] = docs[0] if docs else None
    return ns


def endpoint_label(path):
    if path.startswith("/v1/models/") and path.endswith("/similarity.png") and path.count("/") == 4 \
            and len(path) > len("/v1/models//similarity.png"):
        return "similarity"
    if path == "/" or (path.startswith("/ui/") and len(path) > 4 and "/" not in path[4:]):
        return "ui"
    if path.startswith("/v1/models/") and "/" not in path[len("/v1/models/"):] and len(path) > len("/v1/models/"):
        return "models"  # GET /v1/models/{id}
    return {"/v1/completions": "completions", "/v1/chat/completions": "chat_completions", "/v1/models": "models",
            "/health": "health", "/metrics": "metrics", "/tokenize": "tokenize",
            "/detokenize": "tokenize", "/v1/embeddings": "embeddings"}.get(path, "other")


def reconcile(manifest, port, metrics_file):
    """Counters of one server against the exchanges the client recorded."""
    with open(metrics_file, encoding="utf-8") as f:
        m = parse_prom(f.read())
    seen = {}
    prompt = gen = 0
    share = {"on": 0, "off": 0}
    n200_compl = 0
    with open(manifest, encoding="utf-8") as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    for cols in rows:
        if len(cols) < 8 or cols[7] != str(port) or cols[3] == "000":
            continue
        label, method, path, status, ctype, body = cols[:6]
        ep = endpoint_label(path)
        seen[(ep, status)] = seen.get((ep, status), 0) + 1
        if ep == "completions" and status == "200":
            n200_compl += 1
        if ep == "embeddings" and status == "200":  # its prompt tokens count; it has no sharing mode of its own
            prompt += load(body)["usage"]["prompt_tokens"]
        if ep in ("completions", "chat_completions") and status == "200":
            x = load(body)
            items = x if isinstance(x, list) else [x]
            fin = final(x)
            share["on" if fin["cache"]["shared_attention"] else "off"] += 1
            for ev in items:
                for ch in ev.get("choices", []):
                    if "usage" in ch:
                        prompt += ch["usage"]["prompt_tokens"]
                        gen += ch["usage"]["completion_tokens"]
    results = []
    got = m.get('saserve_requests_total{endpoint="completions",status="200"}', -1)
    results.append((got == n200_compl, "saserve_requests_total{completions,200} = %d, the client got %d completions with 200" % (got, n200_compl)))
    bad = []
    for k, v in m.items():
        mm = re.match(r'^saserve_requests_total\{endpoint="([^"]+)",status="([^"]+)"\}$', k)
        if not mm:
            continue
        want = seen.get((mm.group(1), mm.group(2)), 0)
        if v != want:
            bad.append("%s/%s server %d client %d" % (mm.group(1), mm.group(2), v, want))
    for (ep, st), v in seen.items():
        if 'saserve_requests_total{endpoint="%s",status="%s"}' % (ep, st) not in m:
            bad.append("%s/%s missing on the server (client %d)" % (ep, st, v))
    results.append((not bad, "saserve_requests_total matches the client's %d answers per endpoint and status%s" % (
        sum(seen.values()), (": " + "; ".join(bad)) if bad else "")))
    g = m.get("saserve_generated_tokens_total", -1)
    p = m.get("saserve_prompt_tokens_total", -1)
    results.append((g == gen, "saserve_generated_tokens_total %d = sum of choices' completion_tokens %d" % (g, gen)))
    results.append((p == prompt, "saserve_prompt_tokens_total %d = sum of choices' prompt_tokens %d" % (p, prompt)))
    son = m.get('saserve_requests_shared_attention_total{mode="on"}', -1)
    soff = m.get('saserve_requests_shared_attention_total{mode="off"}', -1)
    results.append((son == share["on"] and soff == share["off"],
                    "saserve_requests_shared_attention_total on/off %d/%d = answers with cache.shared_attention true/false %d/%d"
                    % (son, soff, share["on"], share["off"])))
    hist = m.get('saserve_request_duration_seconds_count{endpoint="completions"}', -1)
    total_c = sum(v for (ep, st), v in seen.items() if ep == "completions")
    results.append((hist == total_c, "saserve_request_duration_seconds_count{completions} %d = completions answers %d" % (hist, total_c)))
    for ok, msg in results:
        print("%s metrics: %s" % ("PASS" if ok else "FAIL", msg))
    return 0 if all(ok for ok, _ in results) else 1


def main(argv):
    if len(argv) >= 3 and argv[1] in ("true", "value"):
        try:
            ns = env(argv[3:])
            v = eval(argv[2], ns)  # noqa: S307 - test helper, expressions come from the test script
        except Exception as e:  # noqa: BLE001
            print("error evaluating %s: %s: %s" % (argv[2], type(e).__name__, e))
            return 2
        if argv[1] == "value":
            print(v if not isinstance(v, (dict, list)) else json.dumps(v))
            return 0
        if v:
            return 0
        print("false: %s" % argv[2])
        return 1
    if len(argv) == 4 and argv[1] == "metric":
        with open(argv[2], encoding="utf-8") as f:
            m = parse_prom(f.read())
        key = argv[3]
        v = m.get(key) if "{" in key else (m.get(key) if key in m else prom_sum(m, key))
        if v is None:
            print("-1")
            return 1
        print("%d" % v if v == int(v) else v)
        return 0
    if len(argv) == 5 and argv[1] == "reconcile":
        return reconcile(argv[2], argv[3], argv[4])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
