#!/usr/bin/env python3
"""request.py - print an Open Inference Protocol request for Fashion-MNIST test images,
read from the Debian package dataset-fashion-mnist (stdlib only; no image data is committed).

  python3 tests/tools/phidnn/request.py 0 1 2 3 [--seed 7] [--samples 4] > /tmp/fmnist.json
  curl -s 'localhost:8080/v2/models/phidnn-fmnist/infer?recreate=sr' -d @/tmp/fmnist.json
"""
import argparse
import gzip
import json
import os

ap = argparse.ArgumentParser()
ap.add_argument("index", type=int, nargs="+")
ap.add_argument("--seed", type=int)
ap.add_argument("--samples", type=int)
ap.add_argument("--data", default=os.environ.get("PHIDNN_DATA", "/usr/share/datasets/fashion-mnist"))
a = ap.parse_args()
with gzip.open(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), "rb") as f:
    raw = f.read()
data = []
for i in a.index:
    data += list(raw[16 + 784 * i:16 + 784 * (i + 1)])
req = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [len(a.index), 1, 28, 28], "data": data}]}
params = {k: v for k, v in (("seed", a.seed), ("samples", a.samples)) if v is not None}
if params:
    req["parameters"] = params
print(json.dumps(req, separators=(",", ":")))
