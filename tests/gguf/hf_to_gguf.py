#!/usr/bin/env python3
"""hf_to_gguf.py - write an F32 GGUF from a Hugging Face Llama checkpoint.

usage: hf_to_gguf.py HF_DIR OUT.gguf [--vocab-from GGUF]

The reference for tests/unit/test_hf.c: an implementation independent of the
C loader (engine/hf.c) that converts the way llama.cpp's convert_hf_to_gguf.py
does. Tensors are renamed to GGUF names, q_proj/k_proj rows are permuted from
HF's rotate-half order to the interleaved order (reshape (n_head, 2,
head_dim/2, in), swap axes 1 and 2), every tensor is written as F32. The
tokenizer metadata (tokenizer.ggml.*) is copied from --vocab-from if given,
so the file is loadable with its tokenizer. Python 3 stdlib only.
"""
import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_bad  # noqa: E402  (the GGUF reader/writer helpers)

DTYPES = {"F32": ("f", 4), "F16": ("e", 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack_from("<Q", data, 0)[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        if info["dtype"] == "BF16":
            vals = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            fmt, size = DTYPES[info["dtype"]]
            vals = list(struct.unpack("<%d%s" % (len(raw) // size, fmt), raw))
        out[name] = (info["shape"], vals)
    return out


def permute_rows(vals, n_rows, n_cols, n_head):
    """numpy: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)"""
    hd = n_rows // n_head
    half = hd // 2
    out = [None] * n_rows
    # index (h, a, i) in the source shape (n_head, 2, half) -> (h, i, a) in the destination
    for h in range(n_head):
        for a in range(2):
            for i in range(half):
                src = (h * 2 + a) * half + i
                dst = (h * half + i) * 2 + a
                out[dst] = vals[src * n_cols:(src + 1) * n_cols]
    return [x for row in out for x in row]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--vocab-from")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    st = read_safetensors(os.path.join(a.hf_dir, "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    n_layer, dim = cfg["num_hidden_layers"], cfg["hidden_size"]
    tied = cfg.get("tie_word_embeddings", False)

    tensors = []  # (gguf name, shape row-major, values)
    emb = st.get("model.embed_tokens.weight") or st["lm_head.weight"]
    tensors.append(("token_embd.weight", emb[0], emb[1]))
    if not tied and "lm_head.weight" in st:
        tensors.append(("output.weight",) + tuple(st["lm_head.weight"]))
    tensors.append(("output_norm.weight",) + tuple(st["model.norm.weight"]))
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for layer in range(n_layer):
        for hf, gg in names.items():
            shape, vals = st["model.layers.%d.%s.weight" % (layer, hf)]
            if hf == "self_attn.q_proj":
                vals = permute_rows(vals, shape[0], shape[1], n_head)
            elif hf == "self_attn.k_proj":
                vals = permute_rows(vals, shape[0], shape[1], n_kv)
            tensors.append(("blk.%d.%s.weight" % (layer, gg), shape, vals))

    kvs = [make_bad.KV(b"general.architecture", make_bad.STRING, make_bad.gstr("llama")),
           make_bad.KV(b"general.name", make_bad.STRING, make_bad.gstr("hf_to_gguf")),
           make_bad.kv_scalar("llama.block_count", make_bad.UINT32, n_layer),
           make_bad.kv_scalar("llama.context_length", make_bad.UINT32, cfg.get("max_position_embeddings", 2048)),
           make_bad.kv_scalar("llama.embedding_length", make_bad.UINT32, dim),
           make_bad.kv_scalar("llama.feed_forward_length", make_bad.UINT32, cfg["intermediate_size"]),
           make_bad.kv_scalar("llama.attention.head_count", make_bad.UINT32, n_head),
           make_bad.kv_scalar("llama.attention.head_count_kv", make_bad.UINT32, n_kv),
           make_bad.kv_scalar("llama.rope.freq_base", make_bad.FLOAT32, cfg.get("rope_theta", 10000.0)),
           make_bad.kv_scalar("llama.attention.layer_norm_rms_epsilon", make_bad.FLOAT32, cfg.get("rms_norm_eps", 1e-6)),
           make_bad.kv_scalar("llama.rope.dimension_count", make_bad.UINT32, dim // n_head)]
    if a.vocab_from:
        src = make_bad.Gguf(open(a.vocab_from, "rb").read())
        kvs += [kv for kv in src.kvs if kv.key.startswith(b"tokenizer.")]

    align = 32
    infos, blobs, off = [], [], 0
    for name, shape, vals in tensors:
        ne = list(reversed(shape))  # GGUF lists the fastest dimension first
        infos.append(make_bad.Tensor(name.encode(), ne, 0, off))
        blob = struct.pack("<%df" % len(vals), *vals)
        pad = (-len(blob)) % align
        blobs.append(blob + b"\0" * pad)
        off += len(blob) + pad
    head = b"GGUF" + make_bad.u32(3) + make_bad.u64(len(infos)) + make_bad.u64(len(kvs))
    head += b"".join(kv.encode() for kv in kvs) + b"".join(t.encode() for t in infos)
    head += b"\0" * ((-len(head)) % align)
    with open(a.out, "wb") as f:
        f.write(head)
        f.write(b"".join(blobs))


if __name__ == "__main__":
    main()
