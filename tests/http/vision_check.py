#!/usr/bin/env python3
"""vision_check.py - black-box checks of the phiDNN Open Inference Protocol endpoints
of a running saserve (tests/scripts/test_vision_http.sh starts it). Standard library only.

usage: vision_check.py PORT TMPDIR MANIFEST

Prints one "PASS ..." / "FAIL ..." line per check and appends every exchange it wants
schema-validated to MANIFEST (the tab-separated format of tests/http/validate.py).
Accuracy is measured over HTTP on the first 1000 Fashion-MNIST test images (from the
Debian package dataset-fashion-mnist) in batches of 50, for every mode the model
serves, and must be at least the accuracy recorded at export (GET /v2/models/{name},
= config/models/phidnn-fmnist.json) minus 2 points.
"""
import concurrent.futures
import gzip
import http.client
import json
import os
import sys

DATA = os.environ.get("PHIDNN_DATA", "/usr/share/datasets/fashion-mnist")
MODEL = "phidnn-fmnist"
N_ACC, BATCH = 1000, 50

port, tmp, manifest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
passed = failed = 0
seq = 0


def result(ok, desc, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS " + desc)
    else:
        failed += 1
        print("FAIL %s -- %s" % (desc, why))


def request(method, path, body=None, label=None, headers=None):
    """One exchange; returns (status, headers dict lower-case, raw bytes). Recorded when label is set."""
    global seq
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body, separators=(",", ":")).encode()
    elif isinstance(body, str):
        body = body.encode()
    try:
        c.request(method, path, body=body, headers=h)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early (413) and closed: the answer is still readable
    r = c.getresponse()
    raw = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    if label:
        seq += 1
        bf, hf = os.path.join(tmp, "v%d.body" % seq), os.path.join(tmp, "v%d.hdr" % seq)
        with open(bf, "wb") as f:
            f.write(raw)
        with open(hf, "w") as f:
            f.write("HTTP/1.1 %d\r\n" % r.status + "".join("%s: %s\r\n" % kv for kv in r.getheaders()) + "\r\n")
        ctype = hdrs.get("content-type", "")
        with open(manifest, "a") as f:
            f.write("\t".join([label, method, path.split("?")[0], str(r.status), ctype, bf, hf, str(port)]) + "\n")
    return r.status, hdrs, raw


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return raw[4 + 4 * nd:], dims


def infer_body(images, datatype="UINT8", params=None, outputs=None):
    n = len(images) // 784
    if datatype == "FP32":
        data = [v / 255.0 for v in images]
    else:
        data = list(images)
    b = {"inputs": [{"name": "image", "datatype": datatype, "shape": [n, 1, 28, 28], "data": data}]}
    if params is not None:
        b["parameters"] = params
    if outputs is not None:
        b["outputs"] = outputs
    return b


def infer_path(mode=None, name=MODEL):
    return "/v2/models/%s/infer" % name + ("?recreate=%s" % mode if mode else "")


def main():
    imgs, dims = load_idx("t10k-images-idx3-ubyte.gz")
    labels, _ = load_idx("t10k-labels-idx1-ubyte.gz")
    assert dims[1:] == [28, 28], dims
    img = lambda i, n=1: imgs[i * 784:(i + n) * 784]  # noqa: E731

    # ---- health, metadata
    st, _, raw = request("GET", "/v2/health/ready", label="v2_ready")
    result(st == 200 and json.loads(raw) == {"ready": True}, "GET /v2/health/ready -> 200 ready", raw[:200])
    st, _, raw = request("GET", "/v2/health/live", label="v2_live")
    result(st == 200, "GET /v2/health/live -> 200", raw[:200])
    st, _, raw = request("GET", "/v2/models/%s/ready" % MODEL, label="v2_model_ready")
    result(st == 200 and json.loads(raw).get("ready") is True, "GET /v2/models/{name}/ready -> 200", raw[:200])
    st, _, raw = request("GET", "/v2/models/" + MODEL, label="v2_metadata")
    meta = json.loads(raw) if st == 200 else {}
    modes = meta.get("parameters", {}).get("recreation_modes", [])
    result(st == 200 and meta.get("name") == MODEL and set(modes) == {"off", "identity", "sr", "inpaint"}
           and meta["inputs"][0]["shape"] == [-1, 1, 28, 28], "metadata: name, four modes, input shape", raw[:300])
    recorded = meta.get("parameters", {}).get("accuracy", {})
    with open("config/models/phidnn-fmnist.json") as f:
        committed = json.load(f)["accuracy_first_1000_test"]
    with open("config/models/phidnn-fmnist.json") as f:
        committed_r = json.load(f)["accuracy_first_1000_test_inpaint_random_partition"]
    result(all(abs(recorded.get(m, -1) - committed[m]) < 1e-6 for m in committed)
           and abs(recorded.get("inpaint_random", -1) - committed_r) < 1e-6,
           "metadata accuracy = config/models/phidnn-fmnist.json", "%s vs %s" % (recorded, committed))

    # ---- the validation table: each case its named 4xx
    good = infer_body(img(0))
    one = good["inputs"][0]

    def with_input(**kw):
        d = dict(one)
        d.update(kw)
        return {"inputs": [d]}

    cases = [
        ("wrong shape", infer_path(), with_input(shape=[1, 1, 28, 27]), 400, "inputs[0].shape", "invalid_value"),
        ("wrong channels", infer_path(), with_input(shape=[1, 3, 28, 28]), 400, "inputs[0].shape", "invalid_value"),
        ("shape of 2 dims", infer_path(), with_input(shape=[28, 28]), 400, "inputs[0].shape", "invalid_value"),
        ("oversized batch", infer_path(), with_input(shape=[65, 1, 28, 28]), 400, "inputs[0].shape", "invalid_value"),
        ("batch 0", infer_path(), with_input(shape=[0, 1, 28, 28], data=[]), 400, "inputs[0].shape", "invalid_value"),
        ("datatype INT64", infer_path(), with_input(datatype="INT64"), 400, "inputs[0].datatype", "invalid_value"),
        ("data too short", infer_path(), with_input(data=one["data"][:-1]), 400, "inputs[0].data", "invalid_value"),
        ("data too long", infer_path(), with_input(data=one["data"] + [0]), 400, "inputs[0].data", "invalid_value"),
        ("UINT8 value 256", infer_path(), with_input(data=[256] + one["data"][1:]), 400, "inputs[0].data",
         "invalid_value"),
        ("UINT8 real value", infer_path(), with_input(data=[0.5] + one["data"][1:]), 400, "inputs[0].data",
         "invalid_type"),
        ("FP32 value 1.5", infer_path(), with_input(datatype="FP32", data=[1.5] + [0.0] * 783), 400,
         "inputs[0].data", "invalid_value"),
        ("FP32 value -0.1", infer_path(), with_input(datatype="FP32", data=[-0.1] + [0.0] * 783), 400,
         "inputs[0].data", "invalid_value"),
        ("FP32 string value", infer_path(), with_input(datatype="FP32", data=["NaN"] + [0.0] * 783), 400,
         "inputs[0].data", "invalid_type"),
        ("input name", infer_path(), with_input(name="pixels"), 400, "inputs[0].name", "invalid_value"),
        ("two inputs", infer_path(), {"inputs": [one, one]}, 400, "inputs", "invalid_type"),
        ("no inputs", infer_path(), {"parameters": {}}, 400, "inputs", "invalid_value"),
        ("unknown mode (query)", infer_path("blur"), good, 400, "recreate", "invalid_value"),
        ("unknown mode (parameters)", infer_path(), dict(good, parameters={"recreate": "blur"}), 400,
         "parameters.recreate", "invalid_value"),
        ("too many samples", infer_path(), dict(good, parameters={"samples": 9}), 400, "parameters.samples",
         "invalid_value"),
        ("samples 0", infer_path(), dict(good, parameters={"samples": 0}), 400, "parameters.samples",
         "invalid_value"),
        ("negative seed", infer_path(), dict(good, parameters={"seed": -1}), 400, "parameters.seed", "invalid_value"),
        ("unknown partition", infer_path("inpaint"), dict(good, parameters={"partition": "stripes"}), 400,
         "parameters.partition", "invalid_value"),
        ("unknown parameter", infer_path(), dict(good, parameters={"temperature": 1}), 400,
         "parameters.temperature", "invalid_value"),
        ("unknown output", infer_path(), dict(good, outputs=[{"name": "logits"}]), 400, "outputs", "invalid_value"),
        ("unknown query key", infer_path() + "?share=on", good, 400, "share", "invalid_value"),
        ("not JSON", infer_path(), "{\"inputs\": [", 400, "body", "invalid_json"),
        ("unknown model", infer_path(name="mnist"), good, 404, "model", "not_found"),
    ]
    for desc, path, body, status, param, code in cases:
        st, _, raw = request("POST", path, body, label="v2_bad_" + desc.replace(" ", "_"))
        try:
            e = json.loads(raw)["error"]
            ok = st == status and e["param"] == param and e["code"] == code and e["message"]
        except (ValueError, KeyError, TypeError):
            ok = False
        result(ok, "%s -> %d param=%s code=%s" % (desc, status, param, code), "got %d %s" % (st, raw[:250]))
    st, hdrs, raw = request("GET", infer_path(), label="v2_infer_get")
    result(st == 405 and hdrs.get("allow") == "POST", "GET .../infer -> 405 Allow: POST", "got %d" % st)
    # the body limit (max_body, 1 MiB in this server): 413
    big = json.dumps(infer_body(img(0, 64), "FP32")) + " " * (1 << 20)
    st, _, raw = request("POST", infer_path(), big, label="v2_too_large")
    result(st == 413, "body over max_body -> 413", "got %d %s" % (st, raw[:200]))

    # ---- determinism and randomness
    body = infer_body(img(0, 8), params={"seed": 12345, "samples": 3, "return_recreation": True})
    a = request("POST", infer_path("sr"), body, label="v2_sr_seed_a")
    b = request("POST", infer_path("sr"), body)
    result(a[0] == 200 and a[2] == b[2], "sr, same seed -> byte-identical answer (%d bytes)" % len(a[2]))
    resp = json.loads(a[2]) if a[0] == 200 else {}
    outs = {o["name"]: o for o in resp.get("outputs", [])}
    result(set(outs) == {"probabilities", "label", "class_index", "recreation"}
           and outs["recreation"]["shape"] == [8, 1, 28, 28] and len(outs["recreation"]["data"]) == 8 * 784
           and resp["parameters"] == {"recreate": "sr", "seed": 12345, "samples": 3},
           "return_recreation: four outputs, recreation [8,1,28,28], parameters echoed", str(resp)[:300])
    probs = outs.get("probabilities", {}).get("data", [])
    result(len(probs) == 80 and all(abs(sum(probs[i * 10:(i + 1) * 10]) - 1) < 1e-4 for i in range(8)),
           "probabilities: 8 x 10, rows sum to 1")
    c = request("POST", infer_path("sr"), infer_body(img(0, 8), params={"seed": 54321, "samples": 3}))
    pc = [o for o in json.loads(c[2])["outputs"] if o["name"] == "probabilities"][0]["data"]
    result(c[0] == 200 and pc != probs, "sr, another seed -> other probabilities")
    d1 = request("POST", infer_path("sr"), infer_body(img(0, 2)), label="v2_sr_noseed")
    d2 = request("POST", infer_path("sr"), infer_body(img(0, 2)))
    s1, s2 = (json.loads(x[2])["parameters"]["seed"] for x in (d1, d2))
    result(s1 != s2, "sr without seed: each request draws a fresh seed (%d, %d)" % (s1, s2))
    d3 = request("POST", infer_path("sr"), infer_body(img(0, 2), params={"seed": s1}))
    result(d3[2] == d1[2], "sr: replaying the reported seed reproduces the answer byte for byte")
    for m in ("inpaint", "identity", "off"):
        x = request("POST", infer_path(m), infer_body(img(10, 4), params={"seed": 1}), label="v2_" + m)
        y = request("POST", infer_path(m), infer_body(img(10, 4), params={"seed": 2}))
        px = [o for o in json.loads(x[2])["outputs"] if o["name"] == "probabilities"][0]["data"]
        py = [o for o in json.loads(y[2])["outputs"] if o["name"] == "probabilities"][0]["data"]
        result(x[0] == 200 and px == py, "%s is deterministic (seeds 1 and 2 agree)" % m)
    # inpaint with random partitions: seeded, so reproducible; other seeds draw other masks
    rp = lambda seed: {"seed": seed, "partition": "random", "samples": 2}  # noqa: E731
    a = request("POST", infer_path("inpaint"), infer_body(img(30, 4), params=rp(8)), label="v2_inpaint_random")
    b = request("POST", infer_path("inpaint"), infer_body(img(30, 4), params=rp(8)))
    c = request("POST", infer_path("inpaint"), infer_body(img(30, 4), params=rp(9)))
    pa = json.loads(a[2]) if a[0] == 200 else {}
    result(a[0] == 200 and a[2] == b[2] and a[2] != c[2] and pa["parameters"].get("partition") == "random",
           "inpaint, random partition: same seed byte-identical, another seed differs, partition reported")
    u = request("POST", infer_path("inpaint"), infer_body(img(20, 4), params={"seed": 3}))
    f = request("POST", infer_path("inpaint"), infer_body(img(20, 4), "FP32", params={"seed": 3}), label="v2_fp32")
    pu = [o for o in json.loads(u[2])["outputs"] if o["name"] == "probabilities"][0]["data"]
    pf = [o for o in json.loads(f[2])["outputs"] if o["name"] == "probabilities"][0]["data"]
    result(f[0] == 200 and max(abs(p - q) for p, q in zip(pu, pf)) < 1e-5, "FP32 input (v/255) = UINT8 input")
    one_img = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28], "data": list(img(5))}]}
    st, _, raw = request("POST", infer_path("off"), one_img, label="v2_unbatched")
    result(st == 200 and [o for o in json.loads(raw)["outputs"] if o["name"] == "label"][0]["shape"] == [1],
           "shape [1, 28, 28] (no batch dimension) accepted")
    nested = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 28, 28],
                          "data": [[[list(img(5)[r * 28:(r + 1) * 28]) for r in range(28)]]]}], "id": "nest-1"}
    st2, _, raw2 = request("POST", infer_path("off"), nested, label="v2_nested")
    result(st2 == 200 and json.loads(raw2)["outputs"][:3] == json.loads(raw)["outputs"][:3]
           and json.loads(raw2).get("id") == "nest-1", "nested data = flat data; id echoed")

    # ---- accuracy over HTTP, every mode, batches of 50
    for m in ("off", "identity", "sr", "inpaint"):
        correct = 0
        bad_status = []
        for s in range(0, N_ACC, BATCH):
            st, _, raw = request("POST", infer_path(m), infer_body(img(s, BATCH), params={"seed": 1000 + s}))
            if st != 200:
                bad_status.append(st)
                continue
            idx = [o for o in json.loads(raw)["outputs"] if o["name"] == "class_index"][0]["data"]
            correct += sum(1 for i, k in enumerate(idx) if k == labels[s + i])
        acc = 100.0 * correct / N_ACC
        want = recorded.get(m, 100.0) - 2.0
        result(not bad_status and acc >= want,
               "accuracy %s over HTTP: %.1f %% (recorded %.1f %%, need >= %.1f)" % (m, acc, recorded.get(m, -1), want),
               "statuses %s" % bad_status[:5])

    correct = 0
    for s in range(0, N_ACC, BATCH):
        st, _, raw = request("POST", infer_path("inpaint"),
                             infer_body(img(s, BATCH), params={"seed": 2000 + s, "partition": "random"}))
        if st == 200:
            idx = [o for o in json.loads(raw)["outputs"] if o["name"] == "class_index"][0]["data"]
            correct += sum(1 for i, k in enumerate(idx) if k == labels[s + i])
    acc = 100.0 * correct / N_ACC
    rec_r = recorded.get("inpaint_random", 100.0)
    result(acc >= rec_r - 2.0, "accuracy inpaint (random partition) over HTTP: %.1f %% (recorded %.1f %%, need >= %.1f)"
           % (acc, rec_r, rec_r - 2.0))

    # ---- the image queue: concurrent requests beyond vision_queue_max get 503 + Retry-After
    body = json.dumps(infer_body(img(0, 64), params={"samples": 8})).encode()
    statuses, retry = [], []

    def one_req(_):
        st, h, raw = request("POST", infer_path("sr"), body)
        return st, h.get("retry-after")
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        for st, ra in ex.map(one_req, range(12)):
            statuses.append(st)
            if st == 503:
                retry.append(ra)
    result(set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses and all(r == "1" for r in retry),
           "12 concurrent jobs, queue of 2: 200s and 503s with Retry-After: 1 (%d x 503)" % statuses.count(503),
           "statuses %s" % statuses)
    st, _, raw = request("POST", infer_path("sr"), body, label="v2_after_busy")
    result(st == 200, "the queue drains: the next request is 200", "got %d" % st)
    # one process serves both models
    st, _, raw = request("POST", "/v1/completions", {"prompt": "Once upon", "max_tokens": 4, "temperature": 0},
                         label="v1_next_to_vision")
    result(st == 200, "POST /v1/completions still served next to the vision model", "got %d" % st)
    # metrics
    st, _, raw = request("GET", "/metrics")
    text = raw.decode()

    def series(name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None
    sr_images = series('saserve_vision_images_total{model="phidnn-fmnist",mode="sr"}')
    bad400 = series('saserve_vision_requests_total{model="phidnn-fmnist",mode="none",status="400"}')
    busy = series('saserve_vision_requests_total{model="phidnn-fmnist",mode="sr",status="503"}')
    too_large = series('saserve_vision_requests_total{model="phidnn-fmnist",mode="none",status="413"}')
    too_large_ep = series('saserve_requests_total{endpoint="v2_infer",status="413"}')
    result(sr_images is not None and sr_images >= N_ACC and bad400 and bad400 >= 20 and busy == statuses.count(503)
           and too_large == 1 and too_large_ep == 1,
           "metrics: images by mode (sr %s), 400s (%s), 503s (%s), the 413 under v2_infer (%s, %s)"
           % (sr_images, bad400, busy, too_large, too_large_ep))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
