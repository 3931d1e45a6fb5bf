#!/usr/bin/env python3
"""faults.py - the load / fault suite of RELIABILITY.md section 4 (T1-T12) and
black-box checks of every configured limit (LIM), against the real saserve
binary on 127.0.0.1 (python3 stdlib + wrk, slowhttptest, zzuf, socat).

    python3 tests/faults/faults.py [--mode short|long] [--only T1,T4,...]
                                   [--out FILE] [--saserve PATH] [--model PATH]

Every test starts its own server on a free loopback port, bounds each client
with a timeout and stops the server (SIGTERM; exit status and sanitizer
reports in its log are checked). After each test the /metrics counters (or,
once the server has exited, its "final counts" log line) are reconciled with
what the clients saw: requests by endpoint and status, generated tokens.

short (make test): every test, small sizes, about 2 minutes on 2 cores.
long (make soak): T1 10 min of wrk, slowhttptest 2 x 60 s, wrk flood 30 s,
zzuf 500 seeds, T12; about 17 minutes. The table goes to stdout and --out.

Environment: SHARED (../shared), BUILD (build), SASERVE (BUILD/saserve),
MODEL (stories260K), SAN=1 (the binary is a sanitizer build: longer timeouts).
Exit status 1 if any test fails.
"""
import argparse
import http.client as httpc
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
SAN_PATTERNS = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|"
                          r"SUMMARY: (Address|Thread|UndefinedBehavior)Sanitizer")
ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat_completions", "/v1/models": "models",
             "/health": "health", "/metrics": "metrics", "/tokenize": "tokenize", "/detokenize": "tokenize",
             "/v1/embeddings": "embeddings"}
PROBE_SRC = "127.0.0.2"  # the health probe's own address: never limited by a load test's per-IP cap
SCRAPE_SRC = "127.0.0.3"
SAN = os.environ.get("SAN", "0") == "1"


def endpoint(path):
    return ENDPOINTS.get(path.split("?", 1)[0], "other")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pctl(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


# ---------------------------------------------------------------- HTTP clients

def http(port, method, path, body=None, headers=None, timeout=20, src=None):
    """One request on its own connection -> (status, headers{lower}, body bytes); status 0 on failure."""
    h = {"Connection": "close"}
    if body is not None and not isinstance(body, bytes):
        body = body.encode()
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        c = httpc.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                       source_address=(src, 0) if src else None)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hd = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hd, data
    except (OSError, httpc.HTTPException) as e:
        return 0, {"error": str(e)}, b""


def raw_exchange(port, data, timeout=10, src=None, chunks=None):
    """Send raw bytes (then optional body chunks, stopping early if the server answers) and read
    until close. -> (status or 0, raw bytes)."""
    s = socket.socket()
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    out = b""
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        for ch in chunks or []:
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                s.sendall(ch)
            except OSError:
                break
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out and out.startswith(b"HTTP/"):
                head = out.split(b"\r\n\r\n", 1)[0].lower()
                m = re.search(rb"content-length: *(\d+)", head)
                if m and len(out) >= len(head) + 4 + int(m.group(1)):
                    break
    except OSError:
        pass
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
    return (int(m.group(1)) if m else 0), out


def post_bytes(path, body, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def complete_answer(status, body, stream):
    """A 200 must carry a whole answer. -> (ok, completion_tokens)."""
    if status != 200:
        return True, 0
    t = body.decode("utf-8", "replace")
    if stream:
        if not t.endswith("data: [DONE]\n\n"):
            return False, 0
        fin, tokens, err = False, 0, False
        for line in t.split("\n"):
            if line.startswith("data: {"):
                d = json.loads(line[6:])
                if "error" in d:
                    err = True
                for ch in d.get("choices", []):
                    fin = fin or ch.get("finish_reason") is not None
                if d.get("usage"):
                    tokens = d["usage"]["completion_tokens"]
        return (fin or err), tokens
    try:
        d = json.loads(t)
        return all(ch.get("finish_reason") for ch in d["choices"]) and len(d["choices"]) > 0, \
            d["usage"]["completion_tokens"]
    except (ValueError, KeyError, TypeError):
        return False, 0


class Tally:
    """What the clients saw: (endpoint, status) counts and generated tokens of complete 200s."""

    def __init__(self):
        self.c = Counter()
        self.tokens = 0
        self.incomplete = 0
        self.lock = threading.Lock()

    def add(self, ep, status, n=1):
        with self.lock:
            self.c[(ep, str(status))] += n

    def answer(self, path, status, body, stream):
        ok, tok = complete_answer(status, body, stream)
        with self.lock:
            self.c[(endpoint(path), str(status))] += 1
            self.tokens += tok
            if not ok:
                self.incomplete += 1
        return ok

    def summary(self, eps=None):
        by = Counter()
        for (ep, st), n in self.c.items():
            if eps is None or ep in eps:
                by[st] += n
        return " ".join("%s:%d" % (k, v) for k, v in sorted(by.items()))


def parse_prom(text):
    req, val = Counter(), {}
    for line in text.splitlines():
        m = re.match(r'saserve_requests_total\{endpoint="(\w+)",status="(\w+)"\} (\d+)', line)
        if m:
            req[(m.group(1), m.group(2))] += int(m.group(3))
            continue
        m = re.match(r"(saserve_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            val[m.group(1)] = val.get(m.group(1), 0) + float(m.group(3))
    return req, val


def parse_final(log):
    """The 'final counts:' line a server logs at shutdown -> (requests Counter, values)."""
    req, val = Counter(), {}
    for line in log.splitlines():
        if "final counts:" in line:
            for tok in line.split("final counts:", 1)[1].split():
                k, _, v = tok.partition("=")
                if "/" in k:
                    ep, st = k.split("/", 1)
                    req[(ep, st)] += int(v)
                else:
                    val["saserve_" + k + "_total"] = float(v)
    return req, val


def reconcile(tally, req, val=None, eps=None, exact_tokens=True, allow_extra=None):
    """Server counts == client counts for the endpoints in eps (all when None).
    allow_extra: {(ep, status): n} the server may hold beyond the clients' count (cut by the client tool).
    -> (ok, text)."""
    keys = set(k for k in req if req[k]) | set(k for k in tally.c if tally.c[k])
    diffs = []
    for k in sorted(keys):
        if eps is not None and k[0] not in eps:
            continue
        s, c = req.get(k, 0), tally.c.get(k, 0)
        extra = (allow_extra or {}).get(k, 0)
        if not (c <= s <= c + extra):
            diffs.append("%s/%s server %d client %d" % (k[0], k[1], s, c))
    if val is not None and exact_tokens:
        g = int(val.get("saserve_generated_tokens_total", -1))
        if g != tally.tokens:
            diffs.append("generated tokens server %d client %d" % (g, tally.tokens))
    if tally.incomplete:
        diffs.append("%d incomplete 200 answers" % tally.incomplete)
    return (not diffs), ("reconciled" if not diffs else "; ".join(diffs))


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, ctx, name, args, model=None, env_extra=None):
        self.ctx, self.name = ctx, name
        self.port = free_port()
        self.log_path = os.path.join(ctx.tmp, "%s-%d.log" % (name, self.port))
        cmd = [ctx.saserve, "serve", "-m", model or ctx.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--threads", "1", "--share-spans", "3-4"] + args
        self.logf = open(self.log_path, "wb")
        env = dict(os.environ)
        env.update(env_extra or {})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.setdefault("TSAN_OPTIONS", "halt_on_error=0 suppressions=%s" % os.path.join(ROOT, "tests", "tsan.supp"))
        self.p = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        self.rc = None
        deadline = time.time() + (60 if SAN else 30)
        self.loading_polls = 0
        while time.time() < deadline:
            st, _, _ = http(self.port, "GET", "/health", timeout=2, src=SCRAPE_SRC)
            if st == 503:
                self.loading_polls += 1  # listening, the model still loading
            if st == 200:
                ctx.scrapes[self.port] = ctx.scrapes.get(self.port, 0) + 1
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("server %s did not start: %s" % (name, self.log()[-500:]))

    def ready_count(self):
        return self.ctx.scrapes.get(self.port, 0)

    def tally_ready(self, tally):
        """The start-up /health polls: 503 (loading) until one 200."""
        tally.add("health", 200, self.ready_count())
        if self.loading_polls:
            tally.add("health", 503, self.loading_polls)

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def proc(self, key):
        try:
            with open("/proc/%d/status" % self.p.pid) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def rss(self):
        return self.proc("VmRSS")

    def fds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.p.pid))
        except OSError:
            return 0

    def metrics(self, tally=None):
        """Scrape; the scrape counts itself (tally gets metrics/200)."""
        st, _, body = http(self.port, "GET", "/metrics", timeout=10, src=SCRAPE_SRC)
        if tally is not None and st:
            tally.add("metrics", st)
        return parse_prom(body.decode("utf-8", "replace"))

    def idle_within(self, secs, tally):
        t0 = time.time()
        while True:
            _, v = self.metrics(tally)
            if v.get("saserve_active_sequences", 1) == 0 and v.get("saserve_kv_bytes_used", 1) == 0 and \
                    v.get("saserve_queue_depth", 1) == 0:
                return True, time.time() - t0
            if time.time() - t0 > secs:
                return False, time.time() - t0
            time.sleep(0.05)

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=15):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.rc = self.p.wait(timeout=grace + (30 if SAN else 5))
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.rc = self.p.wait()
        self.logf.close()
        return self.rc

    def san_reports(self):
        return [ln for ln in self.log().splitlines() if SAN_PATTERNS.search(ln)]


class Probe(threading.Thread):
    """GET /health every interval from PROBE_SRC on a new connection; latencies and failures."""

    def __init__(self, port, tally, interval=0.25, timeout=5):
        super().__init__(daemon=True)
        self.port, self.tally, self.interval, self.timeout = port, tally, interval, timeout
        self.lat, self.fail = [], 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.time()
            st, _, _ = http(self.port, "GET", "/health", timeout=self.timeout, src=PROBE_SRC)
            dt = time.time() - t0
            if st:
                self.tally.add("health", st)
            if st == 200:
                self.lat.append(dt * 1000)
            else:
                self.fail += 1
            self.stop_ev.wait(max(0, self.interval - dt))

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=self.timeout + 2)
        return self

    def text(self):
        return "probe %d ok %d failed, p99 %.0f ms" % (len(self.lat), self.fail, pctl(self.lat, 99))


class Sampler(threading.Thread):
    """RSS and fd count of the server every interval seconds."""

    def __init__(self, srv, interval):
        super().__init__(daemon=True)
        self.srv, self.interval = srv, interval
        self.samples = []  # (t, rss, fds)
        self.stop_ev = threading.Event()
        self.t0 = time.time()

    def run(self):
        while not self.stop_ev.is_set():
            self.samples.append((time.time() - self.t0, self.srv.rss(), self.srv.fds()))
            self.stop_ev.wait(self.interval)

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=self.interval + 2)
        self.samples.append((time.time() - self.t0, self.srv.rss(), self.srv.fds()))
        return self

    def max_fds(self):
        return max((s[2] for s in self.samples), default=0)


def mib(b):
    return "%.1f MiB" % (b / 1048576.0)


def run_wrk(ctx, port, secs, conns, env_extra, timeout_s="30s", threads=2):
    env = dict(os.environ)
    env.update(env_extra)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % secs, "--timeout", timeout_s, "-s",
           os.path.join(HERE, "completions.lua"), "http://127.0.0.1:%d" % port]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=secs + 60)
    out = p.stdout.decode("utf-8", "replace")
    res = Counter()
    for line in out.splitlines():
        if line.startswith("FAULTS "):
            _, k, v = line.split()
            res[k] = float(v) if "." in v else int(v)
    return res, out


# ---------------------------------------------------------------- the tests

class Ctx:
    def __init__(self, mode, saserve, model, tmp):
        self.mode, self.saserve, self.model, self.tmp = mode, saserve, model, tmp
        self.long = mode == "long"
        self.scrapes = {}


def finish_server(srv, row, checks, expect_rc0=True):
    rc = srv.stop()
    if expect_rc0:
        checks.append(("exit 0", rc == 0, "exit %s" % rc))
    rep = srv.san_reports()
    checks.append(("sanitizers", not rep, "no sanitizer report" if not rep else rep[0][:160]))


def result(tid, what, t0, requests, checks):
    ok = all(c[1] for c in checks)
    crit = "; ".join(("" if c[1] else "FAIL ") + c[2] for c in checks)
    return {"id": tid, "what": what, "secs": time.time() - t0, "requests": requests, "criteria": crit,
            "result": "PASS" if ok else "FAIL"}


def t1_soak(ctx):
    """T1: wrk -c32 mixed completions (50 % stream, share on/off, max_tokens 1..64); RSS, probe."""
    t0 = time.time()
    secs = 600 if ctx.long else 15
    warm = 60 if ctx.long else 5
    tally = Tally()
    srv = Server(ctx, "t1", ["--slots", "4", "--queue-max", "64", "--ctx", "512", "--per-ip-connections", "48"])
    srv.tally_ready(tally)
    probe = Probe(srv.port, tally, interval=0.5)
    samp = Sampler(srv, 10 if ctx.long else 1)
    probe.start()
    samp.start()
    res, out = run_wrk(ctx, srv.port, secs + 8, 32, {"FAULTS_STOP_AT": str(int(time.time()) + secs)})
    probe.finish()
    samp.finish()
    checks = []
    comp = {k: v for k, v in res.items() if k.startswith("completions/")}
    for k, v in comp.items():
        tally.add("completions", k.split("/")[1], v)
    tally.tokens += res.get("tokens", 0)
    tally.incomplete += res.get("incomplete", 0)
    models_seen = res.get("models/200", 0)
    tally.add("models", 200, models_seen)
    bad = {k: v for k, v in comp.items() if k not in ("completions/200", "completions/503")}
    checks.append(("statuses", not bad and res.get("unclassified/200", 0) == 0,
                   "completions only 200/503" if not bad else "other statuses %s" % bad))
    checks.append(("retry-after", res.get("no_retry_after", 0) == 0, "503s with Retry-After"))
    after = [s for s in samp.samples if s[0] >= warm]
    base = after[0][1] if after else 0
    peak = max((s[1] for s in after), default=0)
    growth = (peak - base) * 100.0 / base if base else 0
    checks.append(("rss", base > 0 and (growth < 5.0 or SAN),
                   "RSS after %ds warm-up %s, peak %s, growth %.2f %% (< 5 %%)" % (warm, mib(base), mib(peak), growth)))
    checks.append(("probe", probe.fail == 0 and pctl(probe.lat, 99) < 200, probe.text() + " (p99 < 200 ms)"))
    idle, _ = srv.idle_within(5, tally)
    checks.append(("idle", idle, "gauges back to 0"))
    req, val = srv.metrics(tally)
    # wrk's -d deadline cuts GET /v1/models requests in flight (at most one per connection)
    ok, txt = reconcile(tally, req, val, allow_extra={("models", "200"): 32, ("models", "499"): 0})
    checks.append(("reconcile", ok, txt))
    checks.append(("fds", True, "max fds %d" % samp.max_fds()))
    finish_server(srv, None, checks)
    n = sum(comp.values())
    requests = "wrk %d completions (%s), %.0f/s, tokens %d; p99 %s ms" % (
        n, " ".join("%s:%d" % (k.split("/")[1], v) for k, v in sorted(comp.items())), n / float(secs),
        res.get("tokens", 0), res.get("latency_p99_ms", "?"))
    return result("T1", "soak: wrk -t2 -c32 %ds, 50 %% stream, share on/off" % secs, t0, requests, checks)


def open_stream(port, body, src=None):
    s = socket.socket()
    s.settimeout(10)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(post_bytes("/v1/completions", json.dumps(body).encode()))
    return s


def read_until(s, marker, secs):
    buf, deadline = b"", time.time() + secs
    while marker not in buf and time.time() < deadline:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        buf += b
    return buf


def t2_disconnect(ctx):
    """T2: disconnect mid-stream, while queued, during prefill: gauges back to 0, counted 499."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "t2", ["--slots", "1", "--queue-max", "4", "--ctx", "4096", "--max-tokens-limit", "4000",
                             "--prefill-chunk", "8"])
    srv.tally_ready(tally)
    checks, times = [], []
    limit = 3.0 if SAN else 2.0
    # (a) mid-stream
    s = open_stream(srv.port, {"prompt": "Once upon a time", "max_tokens": 4000, "stream": True})
    got = read_until(s, b"data: {", 10)
    s.close()
    tally.add("completions", 499)
    ok, dt = srv.idle_within(limit, tally)
    times.append(dt)
    checks.append(("stream", b"data: {" in got and ok, "mid-stream: idle after %.2f s" % dt))
    # (b) queued: one running stream, three queued plain requests, clients leave
    run = open_stream(srv.port, {"prompt": "Once upon a time", "max_tokens": 4000, "stream": True})
    read_until(run, b"data: {", 10)
    queued = [open_stream(srv.port, {"prompt": "The dog", "max_tokens": 4000}) for _ in range(3)]
    deadline = time.time() + 5
    qd = 0
    while time.time() < deadline:
        _, v = srv.metrics(tally)
        qd = v.get("saserve_queue_depth", 0)
        if qd == 3:
            break
        time.sleep(0.05)
    for q in queued:
        q.close()
    tq = time.time()
    while time.time() - tq < limit:
        _, v = srv.metrics(tally)
        if v.get("saserve_queue_depth", 1) == 0:
            break
        time.sleep(0.05)
    dq = time.time() - tq
    checks.append(("queued", qd == 3 and dq < limit, "3 queued (depth %d) gone after %.2f s" % (qd, dq)))
    run.close()
    tally.add("completions", 499, 4)
    ok, dt = srv.idle_within(limit, tally)
    times.append(max(dq, dt))
    checks.append(("running", ok, "running stream: idle after %.2f s" % dt))
    # (c) mid-prefill: ~3500 prompt tokens in chunks of 8
    prompt = " ".join(["Once upon a time there was a little girl named Lily."] * 220)
    s = open_stream(srv.port, {"prompt": prompt, "max_tokens": 50})
    busy = False
    for _ in range(100):
        _, v = srv.metrics(tally)
        if v.get("saserve_active_sequences", 0) >= 1:
            busy = True
            break
        time.sleep(0.01)
    s.close()
    tally.add("completions", 499)
    ok, dt = srv.idle_within(limit, tally)
    times.append(dt)
    checks.append(("prefill", busy and ok, "mid-prefill: idle after %.2f s" % dt))
    # (d) a stream whose n choices do not all fit the queue (1 slot + 4 waiting < 8): the
    # submitted ones are cancelled and the request is answered 503, not left suspended.
    # max_tokens is large so the first choice is still running while the others are
    # submitted (with 5 tokens it could finish, and free the slot, mid-loop: then all fit)
    st, hd, data = http(srv.port, "POST", "/v1/completions",
                        json.dumps({"prompt": "Once", "max_tokens": 3000, "n": 8, "stream": True}), timeout=10)
    if st:
        tally.answer("/v1/completions", st, data, st == 200)
    checks.append(("partial", st == 503 and "retry-after" in hd, "stream with n=8 over the queue -> %s%s" % (
        st or "no answer in 10 s", " + Retry-After" if "retry-after" in hd else "")))
    ok, dt = srv.idle_within(limit, tally)
    checks.append(("partial idle", ok, "idle after %.2f s" % dt))
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val, exact_tokens=False)
    checks.append(("reconcile", ok, txt + " (6 disconnects = 499)"))
    errs = [ln for ln in srv.log().splitlines() if " error:" in ln or " warn:" in ln]
    checks.append(("log", not errs, "no error/warn log lines" if not errs else errs[0][:120]))
    finish_server(srv, None, checks)
    return result("T2", "disconnect mid-stream / queued / mid-prefill", t0,
                  "6 clients gone: %s" % tally.summary({"completions"}), checks)


def t3_sigterm(ctx):
    """T3: 8 streams, SIGTERM: new connections refused, keep-alive gets 503, streams end, exit 0."""
    t0 = time.time()
    tally = Tally()
    grace = 2
    srv = Server(ctx, "t3", ["--slots", "8", "--ctx", "8192", "--max-tokens-limit", "8000",
                             "--shutdown-grace", str(grace)])
    srv.tally_ready(tally)
    checks = []
    outs = [None] * 8

    def stream(i):
        s = open_stream(srv.port, {"prompt": "Once upon a time", "max_tokens": 8000, "stream": True,
                                   "temperature": 1.0})
        s.settimeout(grace + 20)
        outs[i] = read_until(s, b"data: [DONE]\n\n", grace + 20)
        s.close()

    ths = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        _, v = srv.metrics(tally)
        if v.get("saserve_active_sequences", 0) >= 8:
            break
        time.sleep(0.05)
    keep = httpc.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    keep.request("GET", "/health")
    r = keep.getresponse()
    r.read()
    tally.add("health", r.status)
    ts = time.time()
    srv.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    st, _, _ = http(srv.port, "GET", "/health", timeout=2)
    if st:
        tally.add("health", st)
    checks.append(("new conn", st in (0, 503), "new connection after SIGTERM: %s" % ("refused" if st == 0 else st)))
    try:
        keep.request("POST", "/v1/completions", body='{"prompt": "x", "max_tokens": 2}',
                     headers={"Content-Type": "application/json"})
        r = keep.getresponse()
        r.read()
        kst, ra = r.status, r.getheader("Retry-After")
    except (OSError, httpc.HTTPException):
        kst, ra = 0, None
    if kst:
        tally.add("completions", kst)
    keep.close()
    checks.append(("keep-alive", kst == 503 and ra is not None, "keep-alive completion -> %s, Retry-After %s" % (kst, ra)))
    for t in ths:
        t.join(timeout=grace + 25)
    try:
        rc = srv.p.wait(timeout=grace + (30 if SAN else 3))
    except subprocess.TimeoutExpired:
        rc = None
    dt = time.time() - ts
    cancelled = 0
    for o in outs:
        tally.answer("/v1/completions", 200 if (o or b"").startswith(b"HTTP/1.1 200") else 0,
                     (o or b"").split(b"\r\n\r\n", 1)[-1], True)
        if b'"error":' in (o or b""):
            cancelled += 1
    # the body of a chunked stream: strip chunk framing for the completeness check
    tally.incomplete = 0
    incomplete = 0
    for o in outs:
        body = dechunk((o or b"").split(b"\r\n\r\n", 1)[-1])
        okk, _ = complete_answer(200, body, True)
        incomplete += not okk
    checks.append(("streams", incomplete == 0, "8 streams ended with [DONE] (%d with an error event)" % cancelled))
    checks.append(("exit", rc == 0 and dt < grace + (30 if SAN else 3), "exit %s after %.1f s (grace %d s)" % (rc, dt, grace)))
    srv.stop()
    req, val = parse_final(srv.log())
    ok, txt = reconcile(tally, req, val, exact_tokens=False)
    checks.append(("reconcile", ok and bool(req), txt + " (final counts in the log)"))
    rep = srv.san_reports()
    checks.append(("sanitizers", not rep, "no sanitizer report" if not rep else rep[0][:160]))
    return result("T3", "SIGTERM drain, 8 streams, grace %d s" % grace, t0, tally.summary({"completions"}), checks)


def dechunk(b):
    out, i = b"", 0
    while i < len(b):
        j = b.find(b"\r\n", i)
        if j < 0:
            break
        try:
            n = int(b[i:j].split(b";")[0], 16)
        except ValueError:
            return b
        if n == 0:
            break
        out += b[j + 2:j + 2 + n]
        i = j + 2 + n + 2
    return out


def burst(port, tally, n, body_fn, src=None):
    res = [None] * n
    bar = threading.Barrier(n)

    def one(i):
        body = body_fn(i)
        bar.wait()
        st, hd, data = http(port, "POST", "/v1/completions", json.dumps(body), timeout=60, src=src)
        tally.answer("/v1/completions", st, data, body.get("stream", False)) if st else None
        res[i] = (st, hd)

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=90)
    return res


def t4_kv_budget(ctx):
    """T4: KV budget of 4 sequences, 32 concurrent long requests: only 200/503 (+Retry-After), bounded RSS."""
    t0 = time.time()
    tally = Tally()
    per_seq = 512 * 1280  # stories260K: 5 layers x (K+V) x 64 floats = 1280 bytes per token
    budget = 4 * per_seq
    srv = Server(ctx, "t4", ["--slots", "8", "--ctx", "512", "--kv-budget", str(budget), "--queue-max", "8",
                             "--max-tokens-limit", "500"])
    srv.tally_ready(tally)
    rss0 = srv.rss()
    checks = []
    rounds = 10 if ctx.long else 2
    sts = Counter()
    no_ra = 0
    for _ in range(rounds):
        res = burst(srv.port, tally, 32, lambda i: {"prompt": "Once upon a time", "max_tokens": 400,
                                                     "stream": i % 2 == 1})
        for st, hd in res:
            sts[st] += 1
            if st == 503 and "retry-after" not in hd:
                no_ra += 1
    checks.append(("statuses", set(sts) <= {200, 503} and sts[200] > 0 and sts[503] > 0,
                   "statuses %s" % dict(sorted(sts.items()))))
    checks.append(("retry-after", no_ra == 0, "503s with Retry-After (%d without)" % no_ra))
    ok, dt = srv.idle_within(3, tally)
    checks.append(("idle", ok, "gauges back to 0 after %.2f s" % dt))
    hwm = srv.proc("VmHWM")
    lim = rss0 + budget + 64 * 1048576
    checks.append(("rss", hwm <= lim or SAN, "max RSS %s <= start %s + KV %s + 64 MiB" % (mib(hwm), mib(rss0), mib(budget))))
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("T4", "KV budget 4 seqs, %d x 32 concurrent (max_tokens 400)" % rounds, t0,
                  tally.summary({"completions"}), checks)


MARK = "ZQXJ"


def t5_malformed(ctx):
    """T5: hostile JSON bodies: 400 (413 for size) with error.type, never 5xx, never echoed; alive."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "t5", ["--ctx", "256"])
    srv.tally_ready(tally)
    M = MARK.encode()
    cases = [
        (b'{"prompt": "Once upon' + M, {400}),
        (b"[" * 100000, {400}),
        (b'{"prompt": "' + M + b'", "prompt": "b", "max_tokens": 2}', {200, 400}),
        (b"NaN", {400}),
        (b'{"prompt": "a", "temperature": NaN}', {400}),
        (b'{"prompt": "a", "max_tokens": 1e999}', {400}),
        (b'{"prompt": "a\\u0000' + M + b'"}', {400}),
        (b'{"prompt": "\xff\xfe' + M + b'"}', {400}),
        (b"\xff\xfe{\x00\"\x00p\x00", {400}),
        (b"\xef\xbb\xbf{\"prompt\": \"a\"}", {400}),
        (b'{"prompt": "' + b"a" * (10 * 1048576) + b'"}', {413}),
        (b'{"prompt": 5}', {400}),
        (b'{"prompt": {"' + M + b'": 1}}', {400}),
        (b'{"prompt": "a", "max_tokens": "5"}', {400}),
        (b'{"prompt": "a", "temperature": "hot"}', {400}),
        (b'{"prompt": "a", "stream": "yes"}', {400}),
        (b'{"prompt": "a", "n": []}', {400}),
        (b'{"prompt": "a", "stop": [1]}', {400}),
        (b'{"prompt": "a", "max_tokens": 2, "' + M + b'": 1, "foo": {"bar": [1]}}', {400}),
        (b'{"prompt": "a", "max_tokens": 2, "user": "u", "store": true, "foo": null}', {200}),
        (b'"' + M + b'"', {400}),
        (b"", {400}),
        (b"{}", {400}),
        (b"null", {400}),
        (b'{"prompt": ["a", 5]}', {400}),
        (b'{"prompt": [[1, 2], "a"]}', {400}),
        (b"{" * 40 + b"}" * 40, {400}),
        (b'{"prompt": "a"}' + b" garbage", {400}),
    ]
    bad, echoed, dead = [], 0, 0
    for body, allowed in cases:
        if len(body) > 1048576:  # the server answers 413 before the body is sent: read while sending
            st, raw = raw_exchange(srv.port, post_bytes("/v1/completions", b"")[:-4].replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(body)) + b"\r\n\r\n",
                chunks=[body[i:i + 65536] for i in range(0, len(body), 65536)])
            data = raw.split(b"\r\n\r\n", 1)[-1]
        else:
            st, hd, data = http(srv.port, "POST", "/v1/completions", body, timeout=30)
        if st:
            tally.answer("/v1/completions", st, data, False)
        err_ok = True
        if st in (400, 413):
            try:
                err_ok = bool(json.loads(data)["error"]["type"])
            except (ValueError, KeyError, TypeError):
                err_ok = False
        if st not in allowed or not err_ok:
            bad.append("%s -> %s" % (body[:30], st))
        if st != 200 and M in data:
            # error.param may name an unsupported field by its (plain) name, as documented;
            # nothing else in the answer may carry request bytes
            try:
                e = json.loads(data)["error"]
                e["param"] = None
                if M in json.dumps(e).encode():
                    echoed += 1
            except (ValueError, KeyError, TypeError):
                echoed += 1
        h, _, _ = http(srv.port, "GET", "/health", timeout=5)
        if h:
            tally.add("health", h)
        if h != 200:
            dead += 1
    checks = [("statuses", not bad, "%d bodies: expected 400/413 (unknown fields 400, no-op OpenAI fields and nulls 200)" % len(cases)
               if not bad else "unexpected: %s" % "; ".join(bad[:3])),
              ("echo", echoed == 0, "no raw bytes echoed (error.param names an unsupported field)"), ("alive", dead == 0, "/health 200 after each")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("T5", "malformed / hostile JSON (%d bodies)" % len(cases), t0, tally.summary({"completions"}),
                  checks)


def t6_oversized(ctx):
    """T6: 2 MiB body (Content-Length and chunked) 413, 100 KiB header 431, 16 KiB URL 414, 10k headers 431."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "t6", ["--ctx", "256", "--connection-memory", "16k"])
    srv.tally_ready(tally)
    rounds = 200 if ctx.long else 20
    big = b"a" * (2 * 1048576)
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    sts = {k: Counter() for k in ("cl", "chunked", "header", "url", "headers")}

    def round_():
        st, _ = raw_exchange(srv.port, post_bytes("/v1/completions", b"")[:-(len(b"\r\n\r\n"))].replace(
            b"Content-Length: 0", b"Content-Length: %d" % len(big)) + b"\r\n\r\n", chunks=[big[i:i + 65536] for i in range(0, len(big), 65536)])
        sts["cl"][st] += 1
        if st:
            tally.add("completions", st)
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        st, _ = raw_exchange(srv.port, head, chunks=[chunk] * 32 + [b"0\r\n\r\n"])
        sts["chunked"][st] += 1
        if st:
            tally.add("completions", st)
        # heads over connection_memory: answered by the front door (endpoint "other"), counted
        st, _ = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 102400 + b"\r\n\r\n")
        sts["header"][st] += 1
        tally.add("other", st)
        st, _ = raw_exchange(srv.port, b"GET /health?" + b"a" * 16384 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        sts["url"][st] += 1
        tally.add("other", st)
        hs = b"".join(b"X-%d: a\r\n" % i for i in range(10000))
        st, _ = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + hs + b"\r\n")
        sts["headers"][st] += 1
        tally.add("other", st)

    round_()
    rss0 = srv.rss()
    for _ in range(rounds - 1):
        round_()
    rss1 = srv.rss()
    want = {"cl": 413, "chunked": 413, "header": 431, "url": 414, "headers": 431}
    checks = []
    wrong = ["%s %s" % (k, dict(v)) for k, v in sts.items() if set(v) != {want[k]}]
    checks.append(("statuses", not wrong, "413/413/431/414/431 x %d" % rounds if not wrong else "; ".join(wrong)))
    growth = rss1 - rss0
    checks.append(("rss", growth < 4 * 1048576 or SAN, "RSS %s -> %s%s" % (
        mib(rss0), mib(rss1), " (sanitizer build: quarantine, not checked)" if SAN else " (< +4 MiB)")))
    h, _, _ = http(srv.port, "GET", "/health")
    tally.add("health", h)
    checks.append(("alive", h == 200, "alive"))
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("T6", "oversized body/header/URL x %d" % rounds, t0,
                  "413:%d 431:%d 414:%d" % (sts["cl"][413] + sts["chunked"][413],
                                            sts["header"][431] + sts["headers"][431], sts["url"][414]), checks)


def t7_params(ctx):
    """T7: parameter edges (RELIABILITY C1-C6): documented 400 or clamp, never 5xx, no NaN."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "t7", ["--ctx", "256"])
    srv.tally_ready(tally)
    p = {"prompt": "Once upon a time"}
    cases = [
        ({"max_tokens": 10 ** 18}, {400}), ({"max_tokens": -1}, {400}), ({"max_tokens": 0}, {200, 400}),
        ({"max_tokens": 2 ** 63 - 1}, {400}), ({"max_tokens": 1.5}, {400}), ({"max_tokens": None}, {200, 400}),
        ({"temperature": -1}, {400}), ({"temperature": 1e-45}, {200}), ({"temperature": 1e-320}, {200}),
        ({"temperature": 1e308}, {400}), ({"temperature": 0}, {200}), ({"top_p": 2}, {400}),
        ({"top_p": -0.0}, {200, 400}), ({"top_p": 1.0000001}, {400}), ({"top_k": -5}, {400}),
        ({"top_k": 0}, {200}), ({"top_k": 100000}, {200, 400}), ({"min_p": -1}, {400}), ({"min_p": 1.5}, {400}),
        ({"presence_penalty": 3}, {400}), ({"frequency_penalty": -3}, {400}),
        ({"n": 1000000}, {400}), ({"n": 0}, {400}), ({"n": 2}, {200}), ({"logprobs": 1000000}, {400}),
        ({"logprobs": -1}, {400}), ({"logprobs": 6}, {400}), ({"logprobs": 5}, {200}),
        ({"logprobs": 5, "stream": True}, {200}),
        ({"prompt": [-1]}, {400}), ({"prompt": [512]}, {400}), ({"prompt": [2 ** 32]}, {400}),
        ({"prompt": [1.5]}, {400}), ({"prompt": []}, {400}), ({"prompt": [""]}, {200, 400}),
        ({"prompt": ""}, {200, 400}), ({"prompt": [1, 2, 3]}, {200}),
        ({"stop": ["a"] * 17}, {400}), ({"stop": ["a" * 257]}, {400}), ({"stop": [""]}, {400}),
        ({"stop": ["."]}, {200}), ({"seed": -1}, {200, 400}), ({"seed": 2 ** 64}, {400}),
        ({"prompt": "word " * 400}, {400}),
    ]
    bad, nan = [], 0
    t_n = 0.0
    for extra, allowed in cases:
        body = dict(p, max_tokens=4)
        body.update(extra)
        if body.get("max_tokens") is None:
            del body["max_tokens"]
        t1 = time.time()
        st, _, data = http(srv.port, "POST", "/v1/completions", json.dumps(body), timeout=30)
        if extra.get("n") == 1000000:
            t_n = time.time() - t1
        if st:
            tally.answer("/v1/completions", st, data, bool(body.get("stream")))
        if st not in allowed:
            bad.append("%s -> %s" % (json.dumps(extra)[:40], st))
        if b"NaN" in data or b"nan" in data.replace(b"finish", b""):
            nan += 1
    for _ in range(100 if ctx.long else 20):  # consecutive context overflows must not trip anything
        st, _, data = http(srv.port, "POST", "/v1/completions", json.dumps({"prompt": "word " * 400}))
        tally.answer("/v1/completions", st, data, False)
        if st != 400:
            bad.append("overflow -> %s" % st)
    h, _, _ = http(srv.port, "GET", "/health")
    tally.add("health", h)
    checks = [("statuses", not bad, "%d edge cases: documented 400 or clamp" % len(cases) if not bad else
               "; ".join(bad[:4])), ("nan", nan == 0, "no NaN in any answer"),
              ("n", t_n < 0.05 or SAN, "n=1e6 rejected in %.0f ms" % (t_n * 1000)),
              ("alive", h == 200, "/health 200 after the overflow run")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("T7", "parameter edges (%d cases + overflow run)" % len(cases), t0,
                  tally.summary({"completions"}), checks)


def t8_query(ctx):
    """T8: query toggles: 400 with param; valid toggles change cache.shared_attention."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "t8", ["--ctx", "256"])
    srv.tally_ready(tally)
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 3})
    bad = []
    for q, param in [("share=maybe", "share"), ("share=", "share"), ("share=on&share=off", "share"),
                     ("SHARE=on", "SHARE"), ("foo=1", "foo"), ("share=on%00x", "share"), ("share", "share"),
                     ("rebalance=ON", "rebalance"), ("%00=1", None), ("share%00x=on", "query")]:
        st, _, data = http(srv.port, "POST", "/v1/completions?" + q, body)
        tally.answer("/v1/completions", st, data, False)
        try:
            got = json.loads(data)["error"]["param"]
        except (ValueError, KeyError, TypeError):
            got = "?"
        if st != 400 or (param is not None and got != param):
            bad.append("%s -> %s %s" % (q, st, got))
    sa = {}
    for v in ("on", "off"):
        st, _, data = http(srv.port, "POST", "/v1/completions?share=" + v, body)
        tally.answer("/v1/completions", st, data, False)
        sa[v] = json.loads(data)["cache"]["shared_attention"] if st == 200 else None
    checks = [("bad", not bad, "10 bad queries -> 400 naming param" if not bad else "; ".join(bad[:3])),
              ("toggle", sa == {"on": True, "off": False}, "?share=on/off -> shared_attention %s/%s" %
               (sa.get("on"), sa.get("off")))]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("T8", "query toggles", t0, tally.summary({"completions"}), checks)


def t9_slow(ctx):
    """T9: slowhttptest slow headers (-H) and slow body (-B) + a /health probe from another address."""
    t0 = time.time()
    tally = Tally()
    secs = 60 if ctx.long else 10
    srv = Server(ctx, "t9", ["--ctx", "256", "--request-timeout", "10"])
    srv.tally_ready(tally)
    probe = Probe(srv.port, tally, interval=0.1, timeout=5)
    samp = Sampler(srv, 0.5)
    probe.start()
    samp.start()
    outs = []
    for mode, path, extra in [("-H", "/v1/models", ["-x", "24"]), ("-B", "/v1/completions", ["-s", "8192", "-x", "10"])]:
        cmd = ["slowhttptest", mode, "-c", "500", "-i", "5", "-r", "200", "-l", str(secs), "-p", "3",
               "-u", "http://127.0.0.1:%d%s" % (srv.port, path)] + extra
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=secs + 40)
            outs.append(p.stdout.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            outs.append("timeout")
    probe.finish()
    samp.finish()
    checks = [("probe", probe.fail == 0 and pctl(probe.lat, 99) < 200, probe.text() + " (p99 < 200 ms)")]
    maxfd = samp.max_fds()
    checks.append(("fds", maxfd < 40 + 20 + 40, "max fds %d (per-IP cap 32 + margin 8)" % maxfd))
    ok, _ = srv.idle_within(5, tally)
    checks.append(("alive", srv.alive() and ok, "alive, idle"))
    req, val = srv.metrics(tally)
    if secs > 12:  # request_timeout 10 s + the 1 s heartbeat: slow headers are cut with a 408
        cut = req.get(("other", "408"), 0) + req.get(("models", "408"), 0)
        checks.append(("header deadline", cut > 0, "%d slow-header connections cut (408)" % cut))
    ok, txt = reconcile(tally, req, val, eps={"health", "metrics"})
    checks.append(("reconcile", ok, txt + " (health = probe; slow clients: %s)" % " ".join(
        "%s/%s:%d" % (k[0], k[1], v) for k, v in sorted(req.items()) if v and k[0] not in ("health", "metrics"))))
    finish_server(srv, None, checks)
    outs = [re.sub(r"\x1b\[[0-9;]*m", "", o) for o in outs]
    closed = [int((re.findall(r"closed:\s+(\d+)", o) or ["0"])[-1]) for o in outs]
    ended = [(re.findall(r"Test ended on (\d+)th second", o) or ["?"])[-1] for o in outs]
    return result("T9", "slowhttptest -H and -B, 500 conns, %d s each" % secs, t0,
                  "-H: %d closed by server, ended at %s s; -B: %d closed, ended at %s s; %d probes" % (
                      closed[0], ended[0], closed[1], ended[1], len(probe.lat) + probe.fail), checks)


def t10_flood(ctx):
    """T10: wrk -c1000 on /v1/models: only 200/429/503, fds bounded, the probe unaffected."""
    t0 = time.time()
    tally = Tally()
    secs = 30 if ctx.long else 5
    srv = Server(ctx, "t10", ["--ctx", "256"])
    srv.tally_ready(tally)
    probe = Probe(srv.port, tally, interval=0.2)
    samp = Sampler(srv, 0.5)
    probe.start()
    samp.start()
    res, out = run_wrk(ctx, srv.port, secs, 1000, {"FAULTS_PATH": "/v1/models"}, timeout_s="5s")
    probe.finish()
    samp.finish()
    seen = {k: v for k, v in res.items() if k.startswith("models/")}
    for k, v in seen.items():
        tally.add("models", k.split("/")[1], v)
    checks = []
    bad = [k for k in seen if k not in ("models/200", "models/429", "models/503")]
    checks.append(("statuses", not bad and seen.get("models/200", 0) > 0,
                   "wrk saw %s" % " ".join("%s:%d" % (k.split("/")[1], v) for k, v in sorted(seen.items()))))
    maxfd = samp.max_fds()
    checks.append(("fds", maxfd <= 288 + 20, "max fds %d (hard caps: 40 per address, 288 in all)" % maxfd))
    checks.append(("probe", probe.fail == 0, probe.text()))
    req, val = srv.metrics(tally)
    sbad = [k for k in req if k[0] == "models" and req[k] and k[1] not in ("200", "429", "503")]
    checks.append(("server statuses", not sbad, "server: models only 200/429/503" if not sbad else str(sbad)))
    ok, txt = reconcile(tally, req, val, allow_extra={("models", "200"): 1000, ("models", "429"): 1000,
                                                      ("models", "503"): 1000})
    checks.append(("reconcile", ok, txt + " (server >= wrk: answers cut by wrk's deadline)"))
    finish_server(srv, None, checks)
    return result("T10", "flood: wrk -t2 -c1000 %ds GET /v1/models" % secs, t0,
                  "server %s; wrk errors connect %d read %d" % (
                      " ".join("%s:%d" % (k[1], v) for k, v in sorted(req.items()) if k[0] == "models" and v),
                      res.get("wrk_errors_connect", 0), res.get("wrk_errors_read", 0)), checks)


def t11_zzuf(ctx):
    """T11: requests through socat under zzuf (-n: network input fuzzed) -> no crash, no hang."""
    t0 = time.time()
    tally = Tally()
    seeds = 500 if ctx.long else 25
    srv = Server(ctx, "t11", ["--ctx", "256", "--request-timeout", "5"])
    srv.tally_ready(tally)
    reqs = [post_bytes("/v1/completions", b'{"prompt": "Once upon a time", "max_tokens": 8}'),
            post_bytes("/v1/completions", b'{"prompt": "Once", "max_tokens": 8, "stream": true}'),
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            post_bytes("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}')]
    got = Counter()
    hangs = [0]
    lock = threading.Lock()
    seed_iter = iter(range(seeds))

    def worker():
        while srv.alive():
            with lock:
                seed = next(seed_iter, None)
            if seed is None:
                return
            q = free_port()
            z = subprocess.Popen(["zzuf", "-n", "-s", str(seed), "-r", "0.001:0.01", "socat", "-T", "5", "-t", "0.05",
                                  "TCP-LISTEN:%d,reuseaddr,bind=127.0.0.1" % q, "TCP:127.0.0.1:%d" % srv.port],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(200):  # socat listening?
                try:
                    with open("/proc/net/tcp") as f:
                        if (":%04X 00000000:0000 0A" % q) in f.read():
                            break
                except OSError:
                    pass
                time.sleep(0.01)
            st, _ = raw_exchange(q, reqs[seed % len(reqs)], timeout=5)
            try:
                z.wait(timeout=6)
            except subprocess.TimeoutExpired:
                z.kill()
                z.wait()
                with lock:
                    hangs[0] += 1
            with lock:
                got[st] += 1

    ws = [threading.Thread(target=worker) for _ in range(4)]  # 4 seeds at a time
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    hangs = hangs[0]
    h, _, _ = http(srv.port, "GET", "/health")
    tally.add("health", h)
    checks = [("alive", srv.alive() and h == 200, "server alive, /health %s" % h),
              ("hang", hangs == 0, "no hang (socat -T 5, client 5 s): %d" % hangs)]
    ok, dt = srv.idle_within(5, tally)
    checks.append(("idle", ok, "gauges back to 0"))
    req, val = srv.metrics(tally)
    fuzz = sum(v for k, v in req.items() if k[0] not in ("health", "metrics"))
    checks.append(("reconcile", fuzz <= seeds, "server counted %d of %d fuzzed requests (%s)" % (
        fuzz, seeds, " ".join("%s/%s:%d" % (k[0], k[1], v) for k, v in sorted(req.items())
                              if v and k[0] not in ("health", "metrics")))))
    finish_server(srv, None, checks)
    return result("T11", "zzuf -n -r0.001:0.01 via socat, %d seeds" % seeds, t0,
                  "client saw %s" % " ".join("%s:%d" % (k, v) for k, v in sorted(got.items())), checks)


def t12_models(ctx):
    t0 = time.time()
    if not ctx.long:
        return result("T12", "crafted model files", t0, "-", [("skip", True, "run by make test as test_bad_models")])
    p = subprocess.run(["bash", os.path.join(ROOT, "tests", "scripts", "test_bad_models.sh")], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    last = p.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
    return result("T12", "crafted model files (tests/scripts/test_bad_models.sh)", t0, last[0],
                  [("exit", p.returncode == 0, "exit %d: %s" % (p.returncode, last[0]))])


def lim_limits(ctx):
    """LIM: every configured limit answers its documented status."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "lim", ["--ctx", "64", "--connection-memory", "8k", "--per-ip-connections", "4",
                              "--max-connections", "6", "--request-timeout", "2", "--max-body", "4k",
                              "--max-prompt-bytes", "100", "--max-n", "2", "--max-logprobs", "2", "--max-stop", "2",
                              "--max-tokens-limit", "10"])
    srv.tally_ready(tally)
    checks = []

    def expect(name, st, want, extra_ok=True, detail=""):
        checks.append((name, st == want and extra_ok, "%s %s%s" % (name, st, detail)))

    # connection_memory: 10 KiB of headers do not fit 8 KiB, 2 KiB do
    st, _ = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 10240 + b"\r\n\r\n")
    tally.add("other", st)  # answered by the front door before a request line was handed on: endpoint "other"
    expect("connection_memory 10k header->431", st, 431)
    st, _ = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: " + b"a" * 2048 +
                         b"\r\n\r\n")
    tally.add("health", st)
    expect("2k header->200", st, 200)
    # per_ip_connections 4: a fifth connection from 127.0.0.4 gets 429 + Retry-After
    def hold(n, src):  # n idle connections from address src
        out = []
        for _ in range(n):
            c = socket.socket()
            c.bind((src, 0))
            c.connect(("127.0.0.1", srv.port))
            out.append(c)
        time.sleep(0.2)
        return out

    held = hold(4, "127.0.0.4")
    st, raw = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.4")
    tally.add("health", st)
    body = raw.split(b"\r\n\r\n", 1)[-1]
    expect("per_ip_connections->429", st, 429, b"retry-after: 1" in raw.lower() and b"rate_limit_exceeded" in body)
    # max_connections 6: two more from 127.0.0.5 (6 open), the seventh from 127.0.0.6 gets 503
    held += hold(2, "127.0.0.5")
    st, raw = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", src="127.0.0.6")
    tally.add("health", st)
    expect("max_connections->503", st, 503, b"retry-after: 1" in raw.lower() and b"server_busy" in raw)
    for s in held:
        s.close()
    time.sleep(0.3)
    # request_timeout 2 s: half a body, then the rest after 2.5 s -> 408
    s = socket.socket()
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    b = b'{"prompt": "Once upon a time", "max_tokens": 2}'
    s.sendall(post_bytes("/v1/completions", b)[:-20])
    time.sleep(2.5)
    try:
        s.sendall(post_bytes("/v1/completions", b)[-20:])
        raw = read_until(s, b"}}", 5)
    except OSError:
        raw = b""
    s.close()
    st = int(raw[9:12]) if raw.startswith(b"HTTP/1.1 ") else 0
    if st:
        tally.add("completions", st)
    expect("request_timeout->408", st, 408)
    # request_timeout covers the headers too: a header line every 0.5 s (slowloris) is cut
    s = socket.socket()
    s.settimeout(0.2)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    t1, raw = time.time(), b""
    while time.time() - t1 < 8:
        try:
            s.sendall(b"X-Slow: a\r\n")
            b = s.recv(4096)
            if not b:
                break
            raw += b
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(0.5)
    s.close()
    cut = time.time() - t1
    st = int(raw[9:12]) if raw.startswith(b"HTTP/1.1 ") else 0
    tally.add("other", 408)  # counted by the server whether or not the 408 reached the client
    expect("slow headers->408", st, 408, cut < 4.5, " closed after %.1f s" % cut)
    # max_body 4k
    st, _, data = http(srv.port, "POST", "/v1/completions", '{"prompt": "%s"}' % ("a" * 5000))
    tally.answer("/v1/completions", st, data, False)
    expect("max_body->413", st, 413)

    def post(body, want, param, name):
        st, _, data = http(srv.port, "POST", "/v1/completions", json.dumps(body))
        tally.answer("/v1/completions", st, data, bool(body.get("stream")))
        got = None
        try:
            got = json.loads(data)["error"]["param"] if st != 200 else None
        except (ValueError, KeyError, TypeError):
            pass
        expect(name, st, want, got == param, "" if got is None else " param=%s" % got)
        return data

    post({"prompt": "a" * 101}, 400, "prompt", "max_prompt_bytes->400")
    post({"prompt": "a", "n": 3}, 400, "n", "max_n->400")
    post({"prompt": "a", "max_tokens": 2, "n": 2}, 200, None, "n=2->200")
    post({"prompt": "a", "logprobs": 3}, 400, "logprobs", "max_logprobs->400")
    post({"prompt": "a", "stop": ["x", "y", "z"]}, 400, "stop", "max_stop->400")
    post({"prompt": "a", "stop": ["x", "y"], "max_tokens": 2}, 200, None, "2 stops->200")
    post({"prompt": "a", "max_tokens": 11}, 400, "max_tokens", "max_tokens_limit->400")
    data = post({"prompt": [1] + [400] * 59, "max_tokens": 10}, 200, None, "ctx clamp->200")
    try:
        d = json.loads(data)
        u = d["usage"]
        checks.append(("clamp", u["prompt_tokens"] + u["completion_tokens"] <= 64,
                       "clamped: prompt %d + completion %d <= ctx 64 (%s)" % (
                           u["prompt_tokens"], u["completion_tokens"], d["choices"][0]["finish_reason"])))
    except (ValueError, KeyError, TypeError):
        checks.append(("clamp", False, "clamp answer unreadable"))
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("LIM", "limits: connection_memory, per-IP, total, deadline, body, prompt, n, logprobs, stop, "
                  "max_tokens", t0, tally.summary(), checks)


# ---------------------------------------------------------------- issue 12: numbers, events, start-up, framing

def gguf_tools():
    sys.path.insert(0, os.path.join(ROOT, "tests", "gguf"))
    import make_bad  # noqa: E402 - the crafted-model writer (GGUF reader/writer, stdlib only)
    return make_bad


def poisoned_model(ctx, token):
    """stories260K with finite weights whose product overflows for one input token only: column 0 of the
    embedding is 0 except for `token`, and column 0 of blk.0.attn_q is 3e38, so a sequence that reads
    `token` gets q = inf (then NaN logits) and every other sequence computes exactly what it did before.
    The loader cannot see this cheaply (every weight is finite)."""
    mb = gguf_tools()
    with open(ctx.model, "rb") as f:
        g = mb.Gguf(f.read())
    emb, wq = g.tensor("token_embd.weight"), g.tensor("blk.0.attn_q.weight")
    dim = emb.ne[0]
    d = bytearray(g.data)
    for t in range(emb.ne[1]):
        off = emb.offset + 4 * dim * t
        d[off:off + 4] = struct.pack("<f", 1.0 if t == token else 0.0)
    for r in range(wq.ne[1]):
        off = wq.offset + 4 * wq.ne[0] * r
        d[off:off + 4] = struct.pack("<f", 3e38)
    g.data = bytes(d)
    path = os.path.join(ctx.tmp, "poisoned.gguf")
    with open(path, "wb") as f:
        f.write(g.encode())
    return path


def completion_text(st, data):
    try:
        return json.loads(data)["choices"][0]["text"] if st == 200 else None
    except (ValueError, KeyError, IndexError):
        return None


def n1_sampling_extremes(ctx):
    """N1: the critical request (repeated word, temperature 1, repeat_penalty 1e-38, min_p 0.5) and every
    penalty/truncation parameter at its extremes, next to healthy requests in the same batch."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "n1", ["--ctx", "512", "--slots", "4"])
    srv.tally_ready(tally)
    healthy = {"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0}
    st, _, data = http(srv.port, "POST", "/v1/completions", json.dumps(healthy), timeout=60)
    tally.answer("/v1/completions", st, data, False)
    alone = completion_text(st, data)
    critical = {"prompt": "dog " * 12, "max_tokens": 24, "temperature": 1, "repeat_penalty": 1e-38,
                "min_p": 0.5, "logprobs": 3}
    extremes = [critical]
    for rp in (1e-38, 1e-20, 10):
        for fp, pp in ((-2, -2), (2, 2), (-2, 2)):
            for trunc in ({"min_p": 1}, {"top_p": 1e-9}, {"top_k": 1}, {"top_p": 0.5, "min_p": 0.99, "top_k": 3},
                          {"temperature": 2}, {"temperature": 1e-3}):
                b = {"prompt": "cat cat cat the the the", "max_tokens": 8, "temperature": 1, "repeat_penalty": rp,
                     "frequency_penalty": fp, "presence_penalty": pp, "seed": 7}
                b.update(trunc)
                extremes.append(b)
    if not ctx.long:
        extremes = extremes[:1] + extremes[1::4]
    res, lock = {}, threading.Lock()

    def one(key, body):
        stt, _, d = http(srv.port, "POST", "/v1/completions", json.dumps(body), timeout=120)
        with lock:
            res[key] = (stt, d)
            tally.answer("/v1/completions", stt, d, False)

    # healthy neighbours start first, so the extreme requests join their batch
    ths = [threading.Thread(target=one, args=("h%d" % i, healthy)) for i in range(2)]
    for th in ths:
        th.start()
    time.sleep(0.05)
    ex = [threading.Thread(target=one, args=("x%d" % i, b)) for i, b in enumerate(extremes)]
    for th in ex:
        th.start()
    for th in ths + ex:
        th.join(150)
    bad = ["%s -> %s" % (k, v[0]) for k, v in sorted(res.items()) if v[0] != 200]
    nan = sum(1 for v in res.values() if b"NaN" in v[1] or b"Infinity" in v[1])
    same = [completion_text(*res.get("h%d" % i, (0, b""))) == alone for i in range(2)]
    h, _, _ = http(srv.port, "GET", "/health")
    tally.add("health", h)
    checks = [("statuses", not bad and len(res) == len(extremes) + 2,
               "%d extreme requests + 2 neighbours: all 200" % len(extremes) if not bad else "; ".join(bad[:5])),
              ("nan", nan == 0, "no NaN/Infinity in any answer"),
              ("neighbours", all(same) and alone is not None, "neighbours' greedy text = the same request alone"),
              ("alive", h == 200 and srv.alive(), "server alive")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("N1", "sampling extremes (%d requests) beside healthy ones" % len(extremes), t0,
                  tally.summary({"completions"}), checks)


def n2_nan_logits(ctx):
    """N2: a model whose logits become NaN for one input token (finite weights, overflow in a matmul):
    that request gets 500 numeric_error (counted), the healthy one in the same batch completes unchanged."""
    t0 = time.time()
    tally = Tally()
    token = 4  # a byte token (<0x01>): never in the healthy prompt and never generated by it
    model = poisoned_model(ctx, token)
    srv = Server(ctx, "n2", ["--ctx", "512", "--slots", "4"], model=model)
    srv.tally_ready(tally)
    healthy = {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}
    st, _, data = http(srv.port, "POST", "/v1/completions", json.dumps(healthy), timeout=60)
    tally.answer("/v1/completions", st, data, False)
    alone = completion_text(st, data)
    res, lock = {}, threading.Lock()

    def one(key, body, stream=False):
        if stream:
            body = dict(body, stream=True)
        stt, _, d = http(srv.port, "POST", "/v1/completions", json.dumps(body), timeout=60)
        with lock:
            res[key] = (stt, d)
            tally.answer("/v1/completions", stt, d, stream)

    poison = {"prompt": [1, token, token, 300], "max_tokens": 8, "temperature": 0}
    sampled = {"prompt": [1, 300, token], "max_tokens": 8, "temperature": 1, "min_p": 0.5, "top_p": 0.9}
    ths = [threading.Thread(target=one, args=("healthy", dict(healthy, max_tokens=120))),
           threading.Thread(target=one, args=("poison", poison)),
           threading.Thread(target=one, args=("sampled", sampled)),
           threading.Thread(target=one, args=("stream", poison, True))]
    ths[0].start()
    time.sleep(0.05)
    for th in ths[1:]:
        th.start()
    for th in ths:
        th.join(90)
    errs = []
    for k in ("poison", "sampled"):
        stt, d = res.get(k, (0, b""))
        try:
            e = json.loads(d)["error"]
            ok = stt == 500 and e["type"] == "server_error" and e["code"] == "numeric_error"
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            errs.append("%s -> %s %s" % (k, stt, d[:120]))
    stt, d = res.get("stream", (0, b""))
    if not (stt == 200 and b"numeric_error" in d and d.endswith(b"data: [DONE]\n\n")):
        errs.append("stream -> %s %s" % (stt, d[-160:]))
    hst, hd = res.get("healthy", (0, b""))
    htext = completion_text(hst, hd)
    # after the failures the healthy request alone gives the same answer again (no stale NaN pages)
    st2, _, data2 = http(srv.port, "POST", "/v1/completions", json.dumps(healthy), timeout=60)
    tally.answer("/v1/completions", st2, data2, False)
    _, val0 = srv.metrics(tally)
    checks = [("nan", not errs, "poisoned prompt -> 500 server_error numeric_error (plain, sampled, stream: "
               "error event + [DONE])" if not errs else "; ".join(errs)),
              ("healthy", hst == 200 and htext is not None and htext.startswith(alone or "\x00"),
               "healthy neighbour in the same batch: 200, same text as alone"),
              ("after", completion_text(st2, data2) == alone, "healthy request after the failures: same text"),
              ("gauges", val0.get("saserve_active_sequences", 1) == 0 and val0.get("saserve_kv_bytes_used", 1) == 0,
               "gauges back to 0")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("N2", "non-finite logits for one sequence of a batch", t0, tally.summary({"completions"}), checks)


def n3_event_alloc(ctx):
    """N3: every 3rd allocation of the engine->loop event path fails (SA_FAULT_EVENT_ALLOC=3): every
    request still gets an answer (200 whole, or 503 out_of_memory: never truncated text), nothing hangs,
    SIGTERM exits at once (no job left waiting for a lost DONE)."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "n3", ["--ctx", "256", "--shutdown-grace", "20"], env_extra={"SA_FAULT_EVENT_ALLOC": "3"})
    srv.tally_ready(tally)
    res, lock = [], threading.Lock()

    def one(i):
        body = {"prompt": "Once upon a time", "max_tokens": 1 + i % 6, "temperature": 0, "stream": i % 2 == 1}
        stt, _, d = http(srv.port, "POST", "/v1/completions", json.dumps(body), timeout=30)
        with lock:
            res.append((stt, d, body["stream"]))
            tally.answer("/v1/completions", stt, d, body["stream"])

    ths = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(40)
    sts = Counter(r[0] for r in res)
    full = [r for r in res if r[0] == 200 and not r[2]]
    oom = [r for r in res if r[0] == 503 and b"out_of_memory" in r[1]] + \
        [r for r in res if r[0] == 200 and r[2] and b"out_of_memory" in r[1]]
    ok_sts = len(res) == 24 and set(sts) <= {200, 503}
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val, exact_tokens=False)
    t1 = time.time()
    rc = srv.stop(grace=20)
    secs = time.time() - t1
    checks = [("answered", ok_sts, "24 requests answered: %s (%d whole, %d out_of_memory)" % (
        dict(sts), len(full), len(oom))), ("reconcile", ok, txt),
              ("drain", rc == 0 and secs < (10 if SAN else 3), "SIGTERM: exit %s after %.1f s (grace 20 s)" % (rc, secs)),
              ("oom seen", len(oom) > 0, "the hook fired: %d requests failed cleanly" % len(oom))]
    rep = srv.san_reports()
    checks.append(("sanitizers", not rep, "no sanitizer report" if not rep else rep[0][:160]))
    return result("N3", "event allocations failing", t0, tally.summary({"completions"}), checks)


def n4_startup(ctx):
    """N4: a model check-model accepts also serves: context_length 1 (calibration impossible) starts with a
    warning naming the cause and an off auto plan."""
    t0 = time.time()
    mb = gguf_tools()
    with open(ctx.model, "rb") as f:
        g = mb.Gguf(f.read())
    g.set(mb.kv_scalar("llama.context_length", mb.UINT32, 1))
    path = os.path.join(ctx.tmp, "ctx1.gguf")
    with open(path, "wb") as f:
        f.write(g.encode())
    chk = subprocess.run([ctx.saserve, "check-model", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checks = [("check-model", chk.returncode == 0, "check-model accepts context_length 1")]
    tally = Tally()
    try:
        srv = Server(ctx, "n4", ["--share-spans", "auto"], model=path)
    except RuntimeError as e:
        checks.append(("serve", False, str(e)[:200]))
        return result("N4", "start-up of a 1-token-context model", t0, "-", checks)
    srv.tally_ready(tally)
    log = srv.log()
    checks.append(("warning", "calibration failed" in log and "context holds 1" in log,
                   "serves; log warns: calibration failed, the context holds 1 token"))
    st, _, data = http(srv.port, "GET", "/v1/models")
    tally.add("models", st)
    checks.append(("plan off", st == 200 and b'"share_spans":"off"' in data.replace(b" ", b""), "auto plan is off"))
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("N4", "start-up of a 1-token-context model", t0, tally.summary(), checks)


def f1_framing(ctx):
    """F1: HTTP framing on raw sockets (RFC 9112): each case answered at once with its status as JSON, the
    connection closed, counted in /metrics."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "f1", ["--ctx", "256", "--max-body", "64k", "--connection-memory", "16k",
                             "--request-timeout", "10"])
    srv.tally_ready(tally)
    body = b'{"prompt": "Once", "max_tokens": 2}'
    P = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    tls = bytes.fromhex("160301020001000200fc03035a") + os.urandom(200)
    cases = [
        ("two Content-Length, different", P + b"Content-Length: %d\r\nContent-Length: 5\r\n\r\n" % len(body) + body,
         400, "completions"),
        ("two Content-Length, equal", P + b"Content-Length: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
         % (len(body), len(body)) + body, 200, "completions"),
        ("Content-Length not decimal", P + b"Content-Length: 0x10\r\n\r\n" + body, 400, "other"),
        ("Content-Length and Transfer-Encoding", P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n", 400, "completions"),
        ("Transfer-Encoding gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         501, "completions"),
        ("Transfer-Encoding gzip", P + b"Transfer-Encoding: gzip\r\n\r\nhello", 501, "completions"),
        ("chunk declared over max_body", P + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFF\r\nabc", 413, "other"),
        ("TLS ClientHello", tls, 400, "other"),
        ("binary bytes", b"\x00\x01\x02\x03\xff" * 20, 400, "other"),
        ("request line over connection_memory", b"GET /health?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
         414, "other"),
        ("head over connection_memory", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
         431, "other"),
        ("leading empty line", b"\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, "health"),
    ]
    bad = []
    for name, data, want, ep in cases:
        t1 = time.time()
        st, out = raw_exchange(srv.port, data, timeout=5)
        secs = time.time() - t1
        if st:
            tally.add(ep, st)
        head, _, rest = out.partition(b"\r\n\r\n")
        json_ok = want == 200 or (b"application/json" in head.lower() and b'"error"' in rest)
        if st != want or secs > 2 or not json_ok:
            bad.append("%s -> %s in %.1f s%s" % (name, st, secs, "" if json_ok else " (not a JSON error)"))
    # a kept-alive connection's second request over the limit: 431 from on_access, on the path's endpoint
    s2 = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s2.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s2.recv(4096)
    tally.add("health", 200 if first.startswith(b"HTTP/1.1 200") else 0)
    s2.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 17000 + b"\r\n\r\n")
    second = b""
    try:
        while True:
            b = s2.recv(65536)
            if not b:
                break
            second += b
    except OSError:
        pass
    s2.close()
    m = re.match(rb"HTTP/1\.1 (\d+)", second)
    st2 = int(m.group(1)) if m else 0
    tally.add("health", st2)
    if st2 != 431:
        bad.append("keep-alive second request over connection_memory -> %s" % st2)
    h, _, _ = http(srv.port, "GET", "/health")
    tally.add("health", h)
    checks = [("framing", not bad, "%d cases + keep-alive 431: expected status, JSON error, closed in < 2 s" %
               len(cases) if not bad else "; ".join(bad[:4])), ("alive", h == 200, "alive")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val, exact_tokens=False)
    checks.append(("reconcile", ok, txt))
    finish_server(srv, None, checks)
    return result("F1", "HTTP framing (%d raw-socket cases)" % (len(cases) + 1), t0, tally.summary(), checks)



def f2_slow_reader(ctx):
    """F2: a stream whose client does not read: cut once max_stream_buffer bytes wait, counted as 499,
    its sequence cancelled (gauges back to 0), the server unaffected."""
    t0 = time.time()
    tally = Tally()
    srv = Server(ctx, "f2", ["--ctx", "512", "--max-stream-buffer", "8k"])
    srv.tally_ready(tally)
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 480, "stream": True, "ignore_eos": True,
                       "temperature": 0, "logprobs": 5}).encode()
    # Whether saserve's own buffer ever holds 8k depends on how far the kernel grows the
    # socket's send buffer first (loopback autotuning with a 64k MSS can absorb the whole
    # 170 KB stream): a stream that arrived whole is a valid 200, and the client tries again
    # (at most 3 times).
    attempts = 0
    for attempts in range(1, 4):
        n_cuts, n_whole = srv.log().count("stream cut"), srv.log().count("POST /v1/completions 200")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a tiny window: the server's buffer fills
        # a small MSS keeps the kernel's send-buffer autotuning (a multiple of the MSS) small too
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.time() + (10 if not SAN else 40)
        while time.time() < deadline:
            log = srv.log()
            if log.count("stream cut") > n_cuts or log.count("POST /v1/completions 200") > n_whole:
                break
            time.sleep(0.2)
        s.settimeout(5)
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except OSError:
            pass
        s.close()
        if b"data: [DONE]" not in data:  # (raw chunked framing: the last event is not the last bytes)
            tally.add("completions", 499)
            break
        tally.add("completions", 200)
    idle, secs = srv.idle_within(10, tally)
    st, _, d2 = http(srv.port, "POST", "/v1/completions", json.dumps({"prompt": "Once", "max_tokens": 4}))
    tally.answer("/v1/completions", st, d2, False)
    cut = b"data: [DONE]" not in data
    checks = [("cut", cut and len(data) > 0, "the stream was cut before its end (%d bytes reached the client; attempt %d)"
               % (len(data), attempts)),
              ("idle", idle, "sequence cancelled, gauges back to 0 after %.2f s" % secs),
              ("alive", st == 200, "next request 200"),
              ("logged", "stream cut" in srv.log(), "the cut is logged")]
    req, val = srv.metrics(tally)
    ok, txt = reconcile(tally, req, val, exact_tokens=False)
    checks.append(("reconcile", ok, txt + " (the cut stream counted as 499)"))
    finish_server(srv, None, checks)
    return result("F2", "a client that does not read its stream", t0, tally.summary(), checks)

TESTS = [("T1", t1_soak), ("T2", t2_disconnect), ("T3", t3_sigterm), ("T4", t4_kv_budget), ("T5", t5_malformed),
         ("T6", t6_oversized), ("T7", t7_params), ("T8", t8_query), ("T9", t9_slow), ("T10", t10_flood),
         ("T11", t11_zzuf), ("T12", t12_models), ("LIM", lim_limits), ("N1", n1_sampling_extremes),
         ("N2", n2_nan_logits), ("N3", n3_event_alloc), ("N4", n4_startup), ("F1", f1_framing),
         ("F2", f2_slow_reader)]


def table(rows, mode, total):
    out = ["| id | what | duration | requests / statuses seen | pass criteria (measured) | result |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %.0f s | %s | %s | %s |" % (r["id"], r["what"], r["secs"], r["requests"].replace("|", "/"),
                                                         r["criteria"].replace("|", "/"), r["result"]))
    n_fail = sum(r["result"] != "PASS" for r in rows)
    out.append("")
    out.append("%s mode: %d tests, %d passed, %d failed, %.0f s" % (mode, len(rows), len(rows) - n_fail, n_fail, total))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["short", "long"], default="short")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    build = os.environ.get("BUILD", "build")
    shared = os.environ.get("SHARED", "../shared")
    ap.add_argument("--saserve", default=os.environ.get("SASERVE", os.path.join(build, "saserve")))
    ap.add_argument("--model", default=os.environ.get("MODEL", os.path.join(shared, "models", "stories260K",
                                                                             "stories260K.gguf")))
    a = ap.parse_args()
    os.chdir(ROOT)
    for tool in ("wrk", "slowhttptest", "zzuf", "socat"):
        if subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.DEVNULL).returncode:
            print("FAIL %s is not installed (make deps)" % tool)
            return 1
    if not os.path.exists(a.saserve) or not os.path.exists(a.model):
        print("FAIL %s or %s missing" % (a.saserve, a.model))
        return 1
    only = set(x.strip() for x in a.only.split(",") if x.strip())
    rows = []
    T0 = time.time()
    with tempfile.TemporaryDirectory(prefix="saserve-faults.") as tmp:
        ctx = Ctx(a.mode, os.path.abspath(a.saserve), os.path.abspath(a.model), tmp)
        for tid, fn in TESTS:
            if only and tid not in only:
                continue
            try:
                r = fn(ctx)
            except Exception as e:  # noqa: BLE001 - a test that crashes is a FAIL row, the suite goes on
                import traceback
                where = traceback.extract_tb(e.__traceback__)[-1]
                r = {"id": tid, "what": fn.__doc__.split(":")[0] if fn.__doc__ else tid, "secs": 0, "requests": "-",
                     "criteria": "exception at line %d: %s: %s" % (where.lineno, type(e).__name__, str(e)[:300]),
                     "result": "FAIL"}
                if os.environ.get("FAULTS_KEEP_LOGS"):
                    subprocess.run(["sh", "-c", "tail -n 20 %s/*.log" % tmp])
            print("%s %-4s %4.0f s  %s" % (r["result"], r["id"], r["secs"], r["criteria"]), flush=True)
            rows.append(r)
            if r["result"] != "PASS" and os.environ.get("FAULTS_KEEP_LOGS"):
                subprocess.run(["sh", "-c", "cp %s/*.log %s/ 2>/dev/null" % (tmp, os.environ["FAULTS_KEEP_LOGS"])])
    text = table(rows, a.mode, time.time() - T0)
    print()
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"  # before --out is rewritten
        with open(a.out, "w") as f:
            f.write("# saserve fault suite (%s mode)\n\n" % a.mode)
            f.write("Generated by `python3 tests/faults/faults.py --mode %s` (make %s) on %s; binary %s built "
                    "from %s; %d cores.\n\n" % (a.mode, "soak" if a.mode == "long" else "faults",
                                                time.strftime("%Y-%m-%d %H:%M"), os.path.relpath(a.saserve, ROOT),
                                                rev, os.cpu_count()))
            f.write(text + "\n")
    n_fail = sum(r["result"] != "PASS" for r in rows)
    print("%d passed, %d failed" % (len(rows) - n_fail, n_fail))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
