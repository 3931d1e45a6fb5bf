#!/usr/bin/env python3
"""make_bad_hf.py - crafted bad Hugging Face checkpoints (safetensors, config.json, tokenizer.json).

usage: make_bad_hf.py [HF_DIR] [-o OUTDIR]

HF_DIR defaults to $SHARED/models/tinystories-656K/hf (SHARED defaults to
../shared); OUTDIR to build/bad-hf. Each case is a directory OUTDIR/NAME/
holding config.json, model.safetensors and tokenizer.json (copies of HF_DIR's
with one thing broken), next to OUTDIR/NAME.expect: substrings, one per line,
of which the one-line error of `saserve check-model OUTDIR/NAME` must contain
one. They name the file and the field. Python 3 stdlib only.
"""
import argparse
import json
import os
import shutil
import struct
import sys


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack_from("<Q", data, 0)[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_bytes(header, body, pad=True, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + body


def main():
    shared = os.environ.get("SHARED", "../shared")
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir", nargs="?", default=os.path.join(shared, "models/tinystories-656K/hf"))
    ap.add_argument("-o", "--out", default="build/bad-hf")
    a = ap.parse_args()
    src = a.hf_dir
    header, body = read_st(os.path.join(src, "model.safetensors"))
    config = json.load(open(os.path.join(src, "config.json")))
    tok_text = open(os.path.join(src, "tokenizer.json"), "rb").read()
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    cases = []

    def case(name, expect, st=None, cfg=None, tok=None, drop=(), extra=None):
        d = os.path.join(a.out, name)
        os.makedirs(d)
        files = {"model.safetensors": st if st is not None else st_bytes(header, body),
                 "config.json": cfg if cfg is not None else json.dumps(config).encode(),
                 "tokenizer.json": tok if tok is not None else tok_text}
        files.update(extra or {})
        for fn, content in files.items():
            if fn not in drop:
                open(os.path.join(d, fn), "wb").write(content)
        with open(os.path.join(a.out, name + ".expect"), "w") as f:
            f.write("\n".join(expect) + "\n")
        cases.append(name)

    def hdr(**changes):
        h = json.loads(json.dumps(header))
        for k, fn in changes.items():
            fn(h)
        return h

    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    good = st_bytes(header, body)

    # --- safetensors structure
    case("st_short_file", ["safetensors header length"], st=good[:5])
    case("st_header_len_past_eof", ["safetensors header length"],
         st=struct.pack("<Q", len(good)) + good[8:])
    case("st_header_len_huge", ["safetensors header length"], st=struct.pack("<Q", 2**63 + 5) + good[8:])
    raw = json.dumps(header, separators=(",", ":")).encode()
    case("st_bad_json", ["safetensors header: invalid JSON"], st=st_bytes(None, body, raw_header=raw[:-1] + b" "))
    case("st_not_object", ["safetensors header"], st=st_bytes(None, body, raw_header=b"[1, 2, 3]"))
    case("st_duplicate_key", ["safetensors header: invalid JSON"],
         st=st_bytes(None, body, raw_header=raw[:-1] + b',"model.norm.weight":{}}'))
    case("st_unknown_dtype", ["model.norm.weight': dtype"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(dtype="F99")), body))
    case("st_shape_offset_mismatch", ["model.norm.weight': data_offsets", "needs"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(shape=[129])), body))
    case("st_negative_dim", ["model.norm.weight': shape[0]"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(shape=[-128])), body))
    case("st_shape_overflow", ["model.norm.weight': shape"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(shape=[2**40, 2**40])), body))

    def past_end(h):
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b + 4, e + 4]
    case("st_offsets_out_of_range", ["'%s': data_offsets" % last], st=st_bytes(hdr(x=past_end), body))

    def reversed_offsets(h):
        b, e = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [e, b]
    case("st_offsets_reversed", ["model.norm.weight': data_offsets"], st=st_bytes(hdr(x=reversed_offsets), body))

    def overlap(h):
        b, e = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [b - 4, e - 4]
    case("st_offsets_overlap", ["model.norm.weight': data_offsets", "overlaps"], st=st_bytes(hdr(x=overlap), body))
    case("st_trailing_bytes", ["safetensors data_offsets"], st=good + b"\0" * 4)
    case("st_truncated_data", ["data_offsets end", "exceeds the data section"], st=good[:-4])
    case("st_offsets_not_numbers", ["model.norm.weight': data_offsets"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(data_offsets=["0", "512"])), body))

    # --- safetensors content vs the model
    def rename(h):
        h["model.norm.weightX"] = h.pop("model.norm.weight")
    case("st_missing_tensor", ["model.norm.weight: required tensor is missing"], st=st_bytes(hdr(x=rename), body))

    def rename_q(h):
        h["model.layers.1.self_attn.q_projX.weight"] = h.pop("model.layers.1.self_attn.q_proj.weight")
    case("st_missing_q_proj", ["model.layers.1.self_attn.q_proj.weight: required tensor is missing"],
         st=st_bytes(hdr(x=rename_q), body))
    case("st_wrong_shape", ["model.layers.0.self_attn.k_proj.weight: shape"],
         st=st_bytes(hdr(x=lambda h: h["model.layers.0.self_attn.k_proj.weight"].update(shape=[128, 64])), body))
    case("st_unsupported_dtype", ["model.norm.weight: dtype I32"],
         st=st_bytes(hdr(x=lambda h: h["model.norm.weight"].update(dtype="I32")), body))
    case("st_missing_file", ["model.safetensors"], drop=("model.safetensors",))

    # --- config.json
    def cfg(**kv):
        c = dict(config)
        for k, v in kv.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return json.dumps(c).encode()
    case("cfg_missing", ["config.json"], drop=("config.json",))
    case("cfg_bad_json", ["config.json: invalid JSON"], cfg=b'{"hidden_size": 128,')
    case("cfg_no_hidden_size", ["config.json hidden_size"], cfg=cfg(hidden_size=None))
    case("cfg_hidden_size_string", ["config.json hidden_size"], cfg=cfg(hidden_size="128"))
    case("cfg_heads_zero", ["config.json num_attention_heads"], cfg=cfg(num_attention_heads=0))
    case("cfg_kv_heads", ["config.json num_key_value_heads"], cfg=cfg(num_key_value_heads=3))
    case("cfg_architecture", ["config.json architectures"],
         cfg=cfg(architectures=["GPT2LMHeadModel"], model_type="gpt2"))
    case("cfg_rope_scaling", ["config.json rope_scaling"], cfg=cfg(rope_scaling={"type": "linear", "factor": 2.0}))
    case("cfg_vocab_size", ["config.json vocab_size"], cfg=cfg(vocab_size=4096))
    case("cfg_layers", ["model.layers.2.self_attn.q_proj.weight: required tensor is missing"],
         cfg=cfg(num_hidden_layers=3))
    case("cfg_untied_no_embedding", ["model.embed_tokens.weight: required tensor is missing"],
         cfg=cfg(tie_word_embeddings=False))
    case("cfg_eps_negative", ["config.json rms_norm_eps"], cfg=cfg(rms_norm_eps=-1.0))

    # --- tokenizer.json
    tj = json.loads(tok_text)
    case("tok_missing", ["tokenizer.json"], drop=("tokenizer.json",))
    case("tok_bad_json", ["tokenizer.json: invalid JSON"], tok=tok_text[:1000])
    t2 = json.loads(tok_text)
    t2["model"]["merges"][5] = "nope nada"
    case("tok_bad_merge", ["tokenizer.json model.merges[5]"], tok=json.dumps(t2).encode())
    t3 = json.loads(tok_text)
    t3["model"]["type"] = "Unigram"
    case("tok_unigram", ["tokenizer.json model.type"], tok=json.dumps(t3).encode())
    t4 = json.loads(tok_text)
    t4["normalizer"] = {"type": "NFKC"}
    case("tok_normalizer", ["tokenizer.json normalizer"], tok=json.dumps(t4).encode())
    t5 = json.loads(tok_text)
    t5["model"]["vocab"]["extra-token"] = 5000
    case("tok_too_many", ["tokenizer.json"], tok=json.dumps(t5).encode())
    case("tokcfg_bad_json", ["tokenizer_config.json: invalid JSON"], extra={"tokenizer_config.json": b'{"add_bos_token": tru'})
    t6 = json.loads(tok_text)
    t6["model"]["vocab"]["huge-id"] = 1 << 30
    case("tok_huge_id", ["tokenizer.json model.vocab"], tok=json.dumps(t6).encode())
    del tj
    print("wrote %d bad checkpoints to %s" % (len(cases), a.out), file=sys.stderr)


if __name__ == "__main__":
    main()
