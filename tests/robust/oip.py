"""oip.py - a stdlib-only Open Inference Protocol client for saserve's phiDNN endpoint,
plus the Fashion-MNIST reader and a server launcher shared by the robustness scripts."""
import gzip
import http.client
import json
import os
import re
import socket
import subprocess
import time

DATA = os.environ.get("PHIDNN_DATA", "/usr/share/datasets/fashion-mnist")
MODEL = "phidnn-fmnist"


def load_test(n=10000):
    """(list of n byte strings of 784 pixels, list of labels) from the Debian package."""
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    with gzip.open(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        lab = f.read()
    return [raw[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)], list(lab[8:8 + n])


class Client:
    """One keep-alive connection; infer() returns (status, probabilities rows, seconds)."""

    def __init__(self, port, host="127.0.0.1", timeout=60):
        self.host, self.port, self.timeout = host, port, timeout
        self.c = None

    def _conn(self):
        if self.c is None:
            self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.c

    def post(self, path, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError, socket.timeout):
                self.c = None
                if attempt:
                    raise

    def infer(self, images, mode="off", datatype="FP32", seed=None, samples=None):
        """images: list of flat 784-pixel sequences (FP32 values in [0,1], or UINT8 ints)."""
        n = len(images)
        flat = []
        for im in images:
            flat.extend(im)
        if datatype == "FP32":
            flat = [round(float(v), 7) for v in flat]
        body = {"inputs": [{"name": "image", "datatype": datatype, "shape": [n, 1, 28, 28], "data": flat}]}
        params = {}
        if seed is not None:
            params["seed"] = seed
        if samples is not None:
            params["samples"] = samples
        if params:
            body["parameters"] = params
        t = time.perf_counter()
        st, raw = self.post("/v2/models/%s/infer?recreate=%s" % (MODEL, mode), body)
        dt = time.perf_counter() - t
        if st != 200:
            return st, None, dt
        outs = {o["name"]: o for o in json.loads(raw)["outputs"]}
        p = outs["probabilities"]["data"]
        k = len(p) // n
        return st, [p[i * k:(i + 1) * k] for i in range(n)], dt

    def get(self, path):
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        c.request("GET", path)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, raw


def vision_counts(client):
    """{(mode, status): count} from saserve_vision_requests_total in /metrics."""
    st, raw = client.get("/metrics")
    out = {}
    for m in re.finditer(r'^saserve_vision_requests_total\{([^}]*)\} (\d+)$', raw.decode(), re.M):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[(lab.get("mode"), lab.get("status"))] = int(m.group(2))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_server(saserve, llm, vision, log, threads=2, extra=()):
    """Starts saserve on a free port; returns (Popen, port) once /v2/health/ready is 200."""
    port = free_port()
    args = [saserve, "serve", "-m", llm, "--vision-model", vision, "--host", "127.0.0.1",
            "--port", str(port), "--threads", str(threads), "--ctx", "256",
            "--vision-max-batch", "64", "--max-body", "8m"] + list(extra)
    p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    c = Client(port)
    for _ in range(400):
        if p.poll() is not None:
            raise RuntimeError("saserve exited %d; see %s" % (p.returncode, log))
        try:
            if c.get("/v2/health/ready")[0] == 200:
                return p, port
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("saserve not ready; see " + log)
