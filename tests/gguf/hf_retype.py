#!/usr/bin/env python3
"""hf_retype.py - copy a Hugging Face checkpoint with its tensors in another dtype.

usage: hf_retype.py HF_DIR OUT_DIR {F32,F16,BF16} [--misalign] [--untie]

For tests/unit/test_hf.c: model.safetensors is rewritten with every F32
tensor converted to F16 (IEEE, round to nearest even: struct 'e') or BF16
(round to nearest even on the upper 16 bits); --misalign pads the JSON header
to an odd length so no tensor's data is aligned to its element size (the
loader must copy). config.json and the tokenizer files are copied as they
are, except that --untie stores model.embed_tokens.weight and lm_head.weight
as two tensors and writes tie_word_embeddings false. Python 3 stdlib only.
"""
import argparse
import json
import os
import shutil
import struct

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("dtype", choices=["F32", "F16", "BF16"])
ap.add_argument("--misalign", action="store_true")
ap.add_argument("--untie", action="store_true")
a = ap.parse_args()
os.makedirs(a.dst, exist_ok=True)
for f in os.listdir(a.src):
    if f != "model.safetensors":
        shutil.copy(os.path.join(a.src, f), os.path.join(a.dst, f))
data = open(os.path.join(a.src, "model.safetensors"), "rb").read()
n = struct.unpack_from("<Q", data, 0)[0]
header = json.loads(data[8:8 + n])
base = 8 + n
if a.untie and "model.embed_tokens.weight" not in header:
    header["model.embed_tokens.weight"] = dict(header["lm_head.weight"])
    header["model.embed_tokens.weight"]["data_offsets"] = [2**62] + header["lm_head.weight"]["data_offsets"]  # sorts last
    cfg = json.load(open(os.path.join(a.src, "config.json")))
    cfg["tie_word_embeddings"] = False
    json.dump(cfg, open(os.path.join(a.dst, "config.json"), "w"))
    header.pop("__metadata__", None)
out_h, blobs, off = {}, [], 0
for name, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
    b, e = info["data_offsets"][-2:]
    vals = struct.unpack("<%df" % ((e - b) // 4), data[base + b:base + e])
    if a.dtype == "F32":
        blob = struct.pack("<%df" % len(vals), *vals)
    elif a.dtype == "F16":
        blob = struct.pack("<%de" % len(vals), *vals)
    else:
        words = []
        for u in struct.unpack("<%dI" % len(vals), struct.pack("<%df" % len(vals), *vals)):
            u += 0x7FFF + ((u >> 16) & 1)  # round to nearest even
            words.append((u >> 16) & 0xFFFF)
        blob = struct.pack("<%dH" % len(words), *words)
    out_h[name] = {"dtype": a.dtype, "shape": info["shape"], "data_offsets": [off, off + len(blob)]}
    blobs.append(blob)
    off += len(blob)
if "__metadata__" in header:
    out_h["__metadata__"] = header["__metadata__"]
h = json.dumps(out_h).encode()
h += b" " * ((-len(h)) % 8)
if a.misalign:
    h += b" " * 7  # odd length: the data section starts at an odd offset
open(os.path.join(a.dst, "model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
