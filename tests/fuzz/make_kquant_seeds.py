#!/usr/bin/env python3
"""make_kquant_seeds.py - small K-quant / IQ4 / split seeds for the fuzz_gguf corpus.

usage: make_kquant_seeds.py [KQUANT_DIR] [-o OUTDIR]

KQUANT_DIR defaults to $SHARED/models/kquant (llama.cpp's conformance files),
OUTDIR to tests/fuzz/corpus/gguf. Each seed is a GGUF of a few KB: the
metadata of the tiny model, and two rows of blk.0.attn_q.weight (plus the
F32 output_norm) copied from one of llama.cpp's files, so real block bytes of
every type reach the fuzzer; one seed carries the split.* keys of a first
shard. The seeds are named .bin (the repository ignores *.gguf; the fuzzer
does not care about names). Python 3 stdlib only; reuses tests/gguf/make_bad.py's reader.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gguf"))
import make_bad as mb  # noqa: E402

KEEP_KEYS = (b"general.architecture", b"general.name", b"llama.embedding_length", b"llama.block_count",
             b"llama.feed_forward_length", b"llama.attention.head_count", b"llama.attention.head_count_kv",
             b"split.no", b"split.count", b"split.tensors.count")


def seed(src, tensor_names, rows=2):
    g = src.copy()
    g.kvs = [kv for kv in g.kvs if kv.key in KEEP_KEYS]
    data, tensors = b"", []
    for name in tensor_names:
        t = src.tensor(name)
        ne = list(t.ne)
        if len(ne) > 1:
            ne[1] = min(ne[1], rows)
        nt = mb.Tensor(t.name, ne, t.type, len(data))
        blob = src.data[t.offset:t.offset + nt.n_bytes()]
        data += blob + b"\0" * ((32 - len(blob) % 32) % 32)
        tensors.append(nt)
    g.tensors, g.data = tensors, data
    return g.encode()


def main():
    shared = os.environ.get("SHARED") or "../shared"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kquant", nargs="?", default=os.path.join(shared, "models/kquant"))
    ap.add_argument("-o", "--out", default="tests/fuzz/corpus/gguf")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n = 0
    for typ in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"):
        src = mb.load_gguf(os.path.join(args.kquant, "tiny-pure-%s.gguf" % typ))
        with open(os.path.join(args.out, "kquant_%s.bin" % typ.lower()), "wb") as f:
            f.write(seed(src, ["blk.0.attn_q.weight", "output_norm.weight"]))
        n += 1
    src = mb.load_gguf(os.path.join(args.kquant, "tiny-mix-Q4_K_M.gguf"))
    with open(os.path.join(args.out, "kquant_mix_q4_k_m.bin"), "wb") as f:
        f.write(seed(src, ["blk.0.attn_q.weight", "output.weight", "output_norm.weight"], rows=1))
    first = mb.load_gguf(os.path.join(args.kquant, "split", "tiny-mix-Q4_K_M-00001-of-00003.gguf"))
    with open(os.path.join(args.out, "kquant_split_first_shard.bin"), "wb") as f:
        f.write(seed(first, [first.tensors[0].name.decode()], rows=1))
    n += 2
    print("make_kquant_seeds.py: wrote %d seeds to %s" % (n, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
