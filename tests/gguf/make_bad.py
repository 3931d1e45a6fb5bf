#!/usr/bin/env python3
"""make_bad.py - crafted bad GGUF files for RELIABILITY.md A1-A6 and model-level checks.

usage: make_bad.py [INPUT.gguf] [--phidnn PHIDNN.gguf] [-o OUTDIR]

INPUT defaults to $SHARED/models/stories260K/stories260K.gguf (SHARED defaults
to ../shared); PHIDNN (the phidnn-architecture cases, named phidnn_*) to
config/models/phidnn-fmnist.gguf ("" skips them); OUTDIR defaults to build/bad-gguf. With --kquant DIR (default
$SHARED/models/kquant, skipped if absent) it also writes K-quant cases made
from llama.cpp's files there (row lengths, NaN/Inf super-block scales) and bad
split sets: OUTDIR/split_NAME/ holds a set of shards, and the first shard,
...-00001-of-0000M.gguf, is the file to check (its .expect lies next to it). Every case is written as
OUTDIR/NAME.gguf next to OUTDIR/NAME.expect: one substring per line that the
one-line error of `saserve check-model NAME.gguf` must contain (if there are
several lines, any one of them is enough). The substrings name the field that
is wrong: a header field, a metadata key or a tensor name.

Old *.gguf / *.expect files in OUTDIR are removed first. Python 3 stdlib only.
"""
import argparse
import os
import shutil
import struct
import sys

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FMT = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f",
              BOOL: "B", UINT64: "Q", INT64: "q", FLOAT64: "d"}
# ggml tensor types this project supports: (block elements, block bytes)
TENSOR_TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18),
                10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
                20: (32, 18), 23: (256, 136)}
# byte offsets of the f16 super-block scales in a block: (d, dmin or None)
SCALE_OFFSETS = {8: (0, None), 2: (0, None), 10: (80, 82), 11: (108, None), 12: (0, 2), 13: (0, 2),
                 14: (208, None), 20: (0, None), 23: (0, None)}
TOKEN_TYPE_BYTE = 6


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def gstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u64(len(b)) + b


class BadInput(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise BadInput("input truncated at byte %d" % self.p)
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def str(self):
        return self.take(self.u64())

    def skip_value(self, t):
        if t == STRING:
            self.str()
        elif t == ARRAY:
            et, n = self.u32(), self.u64()
            if et == STRING:
                for _ in range(n):
                    self.str()
            else:
                self.take(struct.calcsize("<" + SCALAR_FMT[et]) * n)
        else:
            self.take(struct.calcsize("<" + SCALAR_FMT[t]))


class KV:
    """key (bytes), type, raw value bytes (for arrays: elem type + count + elements)."""

    def __init__(self, key, typ, raw):
        self.key, self.type, self.raw = key, typ, raw

    def encode(self):
        return gstr(self.key) + u32(self.type) + self.raw

    # array helpers
    def arr(self):
        et, n = struct.unpack_from("<IQ", self.raw, 0)
        return et, n, self.raw[12:]

    def strings(self):
        et, n, body = self.arr()
        assert et == STRING
        out, r = [], Reader(body)
        for _ in range(n):
            out.append(r.str())
        return out

    def scalars(self):
        et, n, body = self.arr()
        return list(struct.unpack("<%d%s" % (n, SCALAR_FMT[et]), body))


def kv_scalar(key, typ, v):
    return KV(key.encode(), typ, struct.pack("<" + SCALAR_FMT[typ], v))


def kv_array(key, et, values):
    if et == STRING:
        body = b"".join(gstr(v) for v in values)
    else:
        body = struct.pack("<%d%s" % (len(values), SCALAR_FMT[et]), *values)
    return KV(key.encode(), ARRAY, u32(et) + u64(len(values)) + body)


class Tensor:
    def __init__(self, name, ne, typ, offset):
        self.name, self.ne, self.type, self.offset = name, list(ne), typ, offset

    def encode(self):
        return (gstr(self.name) + u32(len(self.ne)) + b"".join(u64(x) for x in self.ne) + u32(self.type)
                + u64(self.offset))

    def n_bytes(self):
        bs, bb = TENSOR_TYPES[self.type]
        n = self.ne[0] // bs * bb
        for x in self.ne[1:]:
            n *= x
        return n


class Gguf:
    def __init__(self, data):
        r = Reader(data)
        if r.take(4) != b"GGUF":
            raise BadInput("not a GGUF file")
        self.version = r.u32()
        n_tensors, n_kv = r.u64(), r.u64()
        self.kvs = []
        for _ in range(n_kv):
            key = r.str()
            t = r.u32()
            start = r.p
            r.skip_value(t)
            self.kvs.append(KV(key, t, data[start:r.p]))
        self.tensors = []
        for _ in range(n_tensors):
            name = r.str()
            nd = r.u32()
            ne = [r.u64() for _ in range(nd)]
            t = r.u32()
            self.tensors.append(Tensor(name, ne, t, r.u64()))
        self.alignment = 32
        a = self.find("general.alignment")
        if a is not None:
            self.alignment = struct.unpack("<I", a.raw)[0]
        self.data_offset = (r.p + self.alignment - 1) // self.alignment * self.alignment
        self.data = data[self.data_offset:]

    def find(self, key):
        for kv in self.kvs:
            if kv.key == key.encode():
                return kv
        return None

    def set(self, kv):
        """Replace the entry with kv's key in place, or append it."""
        for i, old in enumerate(self.kvs):
            if old.key == kv.key:
                self.kvs[i] = kv
                return
        self.kvs.append(kv)

    def tensor(self, name):
        for t in self.tensors:
            if t.name == name.encode():
                return t
        raise BadInput("input has no tensor %s" % name)

    def copy(self):
        g = Gguf.__new__(Gguf)
        g.version, g.alignment, g.data = self.version, self.alignment, self.data
        g.kvs = [KV(k.key, k.type, k.raw) for k in self.kvs]
        g.tensors = [Tensor(t.name, t.ne, t.type, t.offset) for t in self.tensors]
        return g

    def header(self, n_tensors=None, n_kv=None):
        h = b"GGUF" + u32(self.version)
        h += u64(len(self.tensors) if n_tensors is None else n_tensors)
        h += u64(len(self.kvs) if n_kv is None else n_kv)
        return h

    def kv_bytes(self):
        return b"".join(kv.encode() for kv in self.kvs)

    def encode(self, n_tensors=None, n_kv=None, alignment=None):
        meta = self.header(n_tensors, n_kv) + self.kv_bytes() + b"".join(t.encode() for t in self.tensors)
        a = alignment or self.alignment
        meta += b"\0" * ((a - len(meta) % a) % a)
        return meta + self.data


def build_cases(src):
    """Returns [(name, bytes, [expected substrings])]."""
    cases = []

    def add(name, data, *expect):
        cases.append((name, data, list(expect)))

    def variant(fn):
        g = src.copy()
        fn(g)
        return g

    tokens = src.find("tokenizer.ggml.tokens")
    if tokens is None:
        raise BadInput("input has no tokenizer.ggml.tokens")
    tok_list = tokens.strings()
    n_vocab = len(tok_list)
    ttype = src.find("tokenizer.ggml.token_type")
    byte_ids = [i for i, v in enumerate(ttype.scalars()) if v == TOKEN_TYPE_BYTE] if ttype else []
    by_offset = sorted(src.tensors, key=lambda t: t.offset)
    last = by_offset[-1]

    # ---- A1: counts and lengths
    add("a1_huge_n_tensors", src.encode(n_tensors=1 << 40), "n_tensors")
    add("a1_huge_n_kv", src.encode(n_kv=1 << 40), "n_kv")
    add("a1_n_kv_beyond_eof", src.encode(n_kv=len(src.kvs) + 5000), "n_kv")

    # string length one byte beyond the end of the file (general.name's value)
    g = src.copy()
    name_kv = g.find("general.name")
    head = g.header()
    pre = b"".join(kv.encode() for kv in g.kvs[:g.kvs.index(name_kv)])
    val_pos = len(head) + len(pre) + 8 + len(name_kv.key) + 4  # position of the string length
    full = bytearray(g.encode())
    remaining = len(full) - (val_pos + 8)
    full[val_pos:val_pos + 8] = u64(remaining + 1)
    add("a1_string_len_beyond_eof", bytes(full), "general.name")

    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.tokens"):
        def f(g, key=key):
            kv = g.find(key)
            e, _, body = kv.arr()
            kv.raw = u32(e) + u64(1 << 63) + body
        add("a1_array_len_2_63_" + key.split(".")[-1], variant(f).encode(), key)

    def token_len_huge(g):  # the second token's string length is 2^63
        kv = g.find("tokenizer.ggml.tokens")
        e, n, body = kv.arr()
        first = 8 + len(tok_list[0])
        kv.raw = u32(e) + u64(n) + body[:first] + u64(1 << 63) + body[first + 8:]
    add("a1_token_string_len_2_63", variant(token_len_huge).encode(), "tokenizer.ggml.tokens")

    # ---- A6: parser DoS shapes
    # the smallest file with an array of length 2^63 (RELIABILITY.md: must fail in < 10 ms)
    tiny = b"GGUF" + u32(3) + u64(0) + u64(1) + gstr("tokenizer.ggml.scores") + u32(ARRAY) + u32(UINT8) + u64(1 << 63)
    add("a6_array_2_63_tiny_file", tiny, "tokenizer.ggml.scores")

    def nested(g):
        kv = g.find("tokenizer.ggml.token_type")
        _, n, body = kv.arr()
        kv.raw = u32(ARRAY) + u64(n) + body
    add("a6_nested_array", variant(nested).encode(), "tokenizer.ggml.token_type")
    add("a6_kv_type_13", variant(lambda g: setattr(g.find("llama.block_count"), "type", 13)).encode(),
        "llama.block_count")

    # ---- A4: type confusion
    add("a4_scores_as_uint8",
        variant(lambda g: g.set(kv_array("tokenizer.ggml.scores", UINT8, [0] * n_vocab))).encode(),
        "tokenizer.ggml.scores")
    add("a4_token_type_as_int8",
        variant(lambda g: g.set(kv_array("tokenizer.ggml.token_type", INT8,
                                         [v for v in ttype.scalars()]))).encode(),
        "tokenizer.ggml.token_type")
    add("a4_scores_count_short",
        variant(lambda g: g.set(kv_array("tokenizer.ggml.scores", FLOAT32, [0.0] * (n_vocab - 1)))).encode(),
        "tokenizer.ggml.scores")
    add("a4_alignment_int32",
        variant(lambda g: g.set(kv_scalar("general.alignment", INT32, 32))).encode(alignment=32),
        "general.alignment")
    for v, label in ((0, "0"), (3, "3"), (1 << 31, "2_31")):
        add("a4_alignment_" + label,
            variant(lambda g, v=v: g.set(kv_scalar("general.alignment", UINT32, v))).encode(alignment=32),
            "general.alignment")

    # ---- A2: tensor shapes and types
    def set_tensor(tname, **kw):
        def f(g):
            t = g.tensor(tname)
            for k, v in kw.items():
                setattr(t, k, v)
        return variant(f).encode()

    emb = src.tensor("token_embd.weight")
    add("a2_ne_2_42_plus_1", set_tensor("token_embd.weight", ne=[(1 << 42) + 1] + emb.ne[1:]), "token_embd.weight")
    add("a2_ne_int64_max_x2", set_tensor("output.weight", ne=[(1 << 63) - 1, 2]), "output.weight")
    add("a2_ne0_wrap_q4_0", set_tensor("token_embd.weight", ne=[5124095576030431008] + emb.ne[1:], type=2),
        "token_embd.weight")
    add("a2_n_dims_0", set_tensor("blk.0.attn_q.weight", ne=[]), "blk.0.attn_q.weight")
    add("a2_n_dims_5", set_tensor("blk.0.attn_q.weight", ne=src.tensor("blk.0.attn_q.weight").ne + [1, 1, 1]),
        "blk.0.attn_q.weight")
    add("a2_type_minus_1", set_tensor("blk.0.attn_q.weight", type=0xFFFFFFFF), "blk.0.attn_q.weight")
    add("a2_type_999", set_tensor("blk.0.attn_q.weight", type=999), "blk.0.attn_q.weight")
    add("a2_type_q4_k", set_tensor("blk.0.attn_q.weight", type=12), "blk.0.attn_q.weight")
    add("a2_q8_0_ne0_not_multiple_of_32", set_tensor("blk.0.attn_norm.weight", ne=[48], type=8),
        "blk.0.attn_norm.weight")

    # ---- A3: offsets
    add("a3_offset_at_eof", set_tensor(last.name.decode(), offset=len(src.data)), last.name.decode())
    add("a3_end_past_eof_by_1", src.encode()[:-1] if last.offset + last.n_bytes() == len(src.data)
        else set_tensor(last.name.decode(), offset=len(src.data) - last.n_bytes() + 1), last.name.decode())
    q = src.tensor("blk.0.attn_q.weight")
    add("a3_overlap", set_tensor("blk.0.attn_k.weight", offset=q.offset + src.alignment), "blk.0.attn_k.weight")
    add("a3_misaligned_offset", set_tensor("blk.0.attn_q.weight", offset=q.offset + 4), "blk.0.attn_q.weight")

    enc = src.encode()
    kv_start = len(src.header())
    tok_pos = kv_start + len(b"".join(kv.encode() for kv in src.kvs[:src.kvs.index(tokens)]))
    cut = tok_pos + len(tokens.encode()) // 2
    add("a3_truncated_in_metadata", enc[:cut], "tokenizer.ggml.tokens")
    ti_start = kv_start + len(src.kv_bytes())
    k = len(src.tensors) - 1  # inside the last tensor info: the n_tensors size bound still holds
    cut_t = ti_start + sum(len(t.encode()) for t in src.tensors[:k]) + 8 + len(src.tensors[k].name) + 6
    add("a3_truncated_in_tensor_info", enc[:cut_t], src.tensors[k].name.decode())
    cut_d = len(src.data) // 2
    first_bad = next(t for t in src.tensors if t.offset + t.n_bytes() > cut_d)
    add("a3_truncated_in_data", enc[:src.data_offset + cut_d], first_bad.name.decode())

    # ---- duplicates
    add("dup_key", variant(lambda g: g.kvs.append(kv_scalar("llama.block_count", UINT32, 1))).encode(),
        "llama.block_count")
    add("dup_tensor_name", set_tensor("blk.0.attn_k.weight", name=b"blk.0.attn_q.weight"), "blk.0.attn_q.weight")

    # ---- A5: vocabulary content
    if byte_ids:
        for label, text in (("minus_1", "<0x-1>"), ("zz", "<0xZZ>"), ("0x100", "<0x100>")):
            def f(g, text=text):
                toks = list(tok_list)
                toks[byte_ids[0]] = text.encode()
                g.set(kv_array("tokenizer.ggml.tokens", STRING, toks))
            add("a5_byte_token_" + label, variant(f).encode(), "tokenizer.ggml.tokens")
    for key, v, label in (("tokenizer.ggml.bos_token_id", n_vocab, "bos_eq_n_vocab"),
                          ("tokenizer.ggml.eos_token_id", n_vocab + 1000, "eos_beyond_n_vocab"),
                          ("tokenizer.ggml.unknown_token_id", n_vocab, "unk_eq_n_vocab")):
        add("a5_" + label, variant(lambda g, key=key, v=v: g.set(kv_scalar(key, UINT32, v))).encode(), key)

    # ---- model level (the loader, after the GGUF parsed)
    add("model_missing_tensor", set_tensor("blk.0.attn_q.weight", name=b"blk.0.attn_x.weight"),
        "blk.0.attn_q.weight")
    add("model_wrong_tensor_shape", set_tensor("blk.0.attn_q.weight", ne=[q.ne[0], q.ne[1] // 2]),
        "blk.0.attn_q.weight")
    add("model_block_count_0", variant(lambda g: g.set(kv_scalar("llama.block_count", UINT32, 0))).encode(),
        "llama.block_count")

    def emb_mismatch(g):
        # double the width and the head count so head_dim (and RoPE dims) stay
        # consistent: only the tensor shapes disagree with the metadata
        dim = struct.unpack("<I", g.find("llama.embedding_length").raw)[0]
        heads = struct.unpack("<I", g.find("llama.attention.head_count").raw)[0]
        g.set(kv_scalar("llama.embedding_length", UINT32, 2 * dim))
        g.set(kv_scalar("llama.attention.head_count", UINT32, 2 * heads))
    add("model_embedding_length_mismatch", variant(emb_mismatch).encode(), "llama.embedding_length",
        "token_embd.weight")
    add("model_head_count_0",
        variant(lambda g: g.set(kv_scalar("llama.attention.head_count", UINT32, 0))).encode(),
        "llama.attention.head_count")
    add("model_head_count_kv_not_divisor",
        variant(lambda g: g.set(kv_scalar("llama.attention.head_count_kv", UINT32, 3))).encode(),
        "llama.attention.head_count_kv")
    add("model_context_length_0",
        variant(lambda g: g.set(kv_scalar("llama.context_length", UINT32, 0))).encode(),
        "llama.context_length")
    add("model_unknown_architecture",
        variant(lambda g: g.set(KV(b"general.architecture", STRING, gstr("mamba")))).encode(),
        "general.architecture")

    # ---- non-finite numbers and strings compared with fixed names (issue 12)
    def poke(g, tname, byte_off, raw):
        """Overwrite raw bytes at byte_off inside tensor tname's data."""
        t = g.tensor(tname)
        d = bytearray(g.data)
        d[t.offset + byte_off:t.offset + byte_off + len(raw)] = raw
        g.data = bytes(d)

    def retype(g, tname, typ, encode_row):
        """Re-encode an F32 tensor in place as a smaller type (the bytes after it stay unused)."""
        t = g.tensor(tname)
        vals = struct.unpack("<%df" % (t.n_bytes() // 4), g.data[t.offset:t.offset + t.n_bytes()])
        t.type = typ
        blob = encode_row(vals)
        d = bytearray(g.data)
        d[t.offset:t.offset + len(blob)] = blob
        g.data = bytes(d)

    def q8_0(vals, bad_block=None, bad_d=0x7E00):
        out = b""
        for b in range(len(vals) // 32):
            blk = vals[32 * b:32 * b + 32]
            amax = max(abs(v) for v in blk)
            d = amax / 127 if amax else 0.0
            qs = [max(-127, min(127, int(round(v / d)))) if d else 0 for v in blk]
            dh = struct.unpack("<H", struct.pack("<e", d))[0] if b != bad_block else bad_d
            out += struct.pack("<H", dh) + struct.pack("<32b", *qs)
        return out

    def q4_0(vals, bad_block=None, bad_d=0x7C00):
        out = b""
        for b in range(len(vals) // 32):
            blk = vals[32 * b:32 * b + 32]
            m = max(blk, key=abs)
            d = m / -8 if m else 0.0
            q = [max(0, min(15, int(v / d + 8.5))) if d else 8 for v in blk]
            dh = struct.unpack("<H", struct.pack("<e", d))[0] if b != bad_block else bad_d
            out += struct.pack("<H", dh) + bytes(q[i] | (q[i + 16] << 4) for i in range(16))
        return out

    def f16(vals, bad_index=None):
        v = list(vals)
        if bad_index is not None:
            v[bad_index] = float("nan")
        return struct.pack("<%de" % len(v), *v)

    f32_nan, f32_inf = struct.pack("<f", float("nan")), struct.pack("<f", float("inf"))
    add("n_nan_output_norm", variant(lambda g: poke(g, "output_norm.weight", 4 * 5, f32_nan)).encode(),
        "output_norm.weight")
    add("n_inf_ffn_norm", variant(lambda g: poke(g, "blk.1.ffn_norm.weight", 0, f32_inf)).encode(),
        "blk.1.ffn_norm.weight")
    add("n_q8_0_scale_nan",
        variant(lambda g: retype(g, "blk.0.attn_q.weight", 8, lambda v: q8_0(v, bad_block=3))).encode(),
        "blk.0.attn_q.weight")
    add("n_q8_0_scale_inf",
        variant(lambda g: retype(g, "blk.2.ffn_up.weight", 8, lambda v: q8_0(v, bad_block=0, bad_d=0xFC00))).encode(),
        "blk.2.ffn_up.weight")
    add("n_q4_0_scale_inf",
        variant(lambda g: retype(g, "blk.1.attn_v.weight", 2, lambda v: q4_0(v, bad_block=1))).encode(),
        "blk.1.attn_v.weight")
    add("n_q4_0_norm_scale_nan",
        variant(lambda g: retype(g, "blk.0.attn_norm.weight", 2, lambda v: q4_0(v, bad_block=0, bad_d=0x7E01))).encode(),
        "blk.0.attn_norm.weight")
    # full_*: load (the cheap checks cannot see them), and check-model --full names the tensor
    add("full_f16_weight_nan",
        variant(lambda g: retype(g, "blk.3.attn_output.weight", 1, lambda v: f16(v, bad_index=77))).encode(),
        "blk.3.attn_output.weight")
    add("full_f32_embedding_inf", variant(lambda g: poke(g, "token_embd.weight", 4 * 1000, f32_inf)).encode(),
        "token_embd.weight")
    add("full_f32_output_nan", variant(lambda g: poke(g, "output.weight", 4 * 64 * 9, f32_nan)).encode(),
        "output.weight")

    add("n_rms_epsilon_0",
        variant(lambda g: g.set(kv_scalar("llama.attention.layer_norm_rms_epsilon", FLOAT32, 0.0))).encode(),
        "llama.attention.layer_norm_rms_epsilon")
    add("n_rms_epsilon_nan",
        variant(lambda g: g.set(kv_scalar("llama.attention.layer_norm_rms_epsilon", FLOAT32, float("nan")))).encode(),
        "llama.attention.layer_norm_rms_epsilon")
    add("n_architecture_nul",
        variant(lambda g: g.set(KV(b"general.architecture", STRING, gstr(b"llama\0mamba")))).encode(),
        "general.architecture")
    add("n_key_nul", variant(lambda g: g.kvs.append(kv_scalar("llama.block_count\0x", UINT32, 1))).encode(),
        "NUL")

    def fewer_tokens(g):
        g.set(kv_array("tokenizer.ggml.tokens", STRING, tok_list[:-1]))
        g.set(kv_array("tokenizer.ggml.scores", FLOAT32, src.find("tokenizer.ggml.scores").scalars()[:-1]))
        g.set(kv_array("tokenizer.ggml.token_type", INT32, ttype.scalars()[:-1]))
    add("n_fewer_tokens_than_rows", variant(fewer_tokens).encode(), "%d tokens but token_embd.weight has %d rows"
        % (n_vocab - 1, n_vocab))
    scores = src.find("tokenizer.ggml.scores").scalars()
    for label, v, at in (("nan", float("nan"), 7), ("inf", float("inf"), 300), ("minus_inf", float("-inf"), 0)):
        def f(g, v=v, at=at):
            sc = list(scores)
            sc[at] = v
            g.set(kv_array("tokenizer.ggml.scores", FLOAT32, sc))
        add("n_score_" + label, variant(f).encode(), "tokenizer.ggml.scores[%d]" % at)
    for label, v, at in (("9", 9, 3), ("minus_1", -1, 200)):
        def f(g, v=v, at=at):
            tt = list(ttype.scalars())
            tt[at] = v
            g.set(kv_array("tokenizer.ggml.token_type", INT32, tt))
        add("n_token_type_" + label, variant(f).encode(), "tokenizer.ggml.token_type[%d]" % at)
    return cases


def build_phidnn_cases(src):
    """Crafted phidnn-architecture files (engine/phidnn.c validation): [(name, bytes, [substrings])]."""
    cases = []

    def add(name, fn, *expect):
        g = src.copy()
        fn(g)
        cases.append(("phidnn_" + name, g.encode(), list(expect)))

    def drop(key):
        def f(g):
            g.kvs = [kv for kv in g.kvs if kv.key != key.encode()]
        return f

    add("channels_0", lambda g: g.set(kv_scalar("phidnn.input.channels", UINT32, 0)), "phidnn.input.channels")
    add("height_27", lambda g: g.set(kv_scalar("phidnn.input.height", UINT32, 27)), "phidnn.input.height")
    add("width_huge", lambda g: g.set(kv_scalar("phidnn.input.width", UINT32, 1 << 20)), "phidnn.input.width")
    add("height_missing", drop("phidnn.input.height"), "phidnn.input.height")
    add("channels_string", lambda g: g.set(KV(b"phidnn.input.channels", STRING, gstr("one"))), "phidnn.input.channels")
    add("classes_one", lambda g: g.set(kv_array("phidnn.classes", STRING, ["x"])), "phidnn.classes")
    add("classes_u32", lambda g: g.set(kv_array("phidnn.classes", UINT32, list(range(10)))), "phidnn.classes")
    add("class_name_empty", lambda g: g.set(kv_array("phidnn.classes", STRING, ["a"] * 9 + [""])), "phidnn.classes[9]")
    add("class_name_quote", lambda g: g.set(kv_array("phidnn.classes", STRING, ["a\"b"] + ["c"] * 9)),
        "phidnn.classes[0]")
    add("modes_unknown", lambda g: g.set(kv_array("phidnn.modes", STRING, ["off", "blur"])), "phidnn.modes[1]")
    add("modes_duplicate", lambda g: g.set(kv_array("phidnn.modes", STRING, ["off", "off"])), "phidnn.modes[1]")
    add("modes_empty", lambda g: g.set(kv_array("phidnn.modes", STRING, [])), "phidnn.modes")
    add("accuracy_count", lambda g: g.set(kv_array("phidnn.accuracy", FLOAT32, [90.0])), "phidnn.accuracy")
    add("accuracy_range", lambda g: g.set(kv_array("phidnn.accuracy", FLOAT32, [90.0, 90.0, 190.0, 90.0])),
        "phidnn.accuracy[2]")
    add("accuracy_random_range", lambda g: g.set(kv_scalar("phidnn.accuracy.inpaint_random", FLOAT32, -3.0)),
        "phidnn.accuracy.inpaint_random")
    add("r_widths_zero", lambda g: g.set(kv_array("phidnn.recreator.widths", UINT32, [0, 32, 8])),
        "phidnn.recreator.widths[0]")
    add("c_widths_len", lambda g: g.set(kv_array("phidnn.classifier.widths", UINT32, [16, 32])),
        "phidnn.classifier.widths")
    add("r_widths_missing", drop("phidnn.recreator.widths"), "phidnn.recreator.widths")
    add("sr_scale_3", lambda g: g.set(kv_scalar("phidnn.sr.scale", UINT32, 3)), "phidnn.sr.scale")
    add("sr_sigma_nan", lambda g: g.set(kv_scalar("phidnn.sr.sigma", FLOAT32, float("nan"))), "phidnn.sr.sigma")
    add("inpaint_k_8", lambda g: g.set(kv_scalar("phidnn.inpaint.k", UINT32, 8)), "phidnn.inpaint.k")
    add("inpaint_partition", lambda g: g.set(KV(b"phidnn.inpaint.partition", STRING, gstr("random"))),
        "phidnn.inpaint.partition")
    add("name_space", lambda g: g.set(KV(b"general.name", STRING, gstr("phidnn fmnist"))), "general.name")

    def rename(g):
        g.tensor("sr.r.e2.weight").name = b"sr.r.e2.weighX"
    add("tensor_missing", rename, "sr.r.e2.weight")

    def transpose(g):  # same bytes, dimensions swapped
        t = g.tensor("inpaint.c.f1.weight")
        t.ne = [t.ne[1], t.ne[0]]
    add("tensor_shape", transpose, "inpaint.c.f1.weight")

    def retype(g):  # F16 of twice the elements: same bytes
        t = g.tensor("off.c.c1.bias")
        t.type, t.ne = 1, [t.ne[0] * 2]
    add("tensor_type", retype, "off.c.c1.bias")

    def nan_weight(g):
        t = g.tensor("identity.r.d3.weight")
        d = bytearray(g.data)
        d[t.offset + 4 * 5:t.offset + 4 * 6] = struct.pack("<f", float("inf"))
        g.data = bytes(d)
    add("tensor_inf", nan_weight, "identity.r.d3.weight")

    def dims3(g):
        t = g.tensor("sr.c.f2.bias")
        t.ne = t.ne + [1]
    add("tensor_dims", dims3, "sr.c.f2.bias")
    return cases


def load_gguf(path):
    with open(path, "rb") as f:
        data = f.read()
    g = Gguf(data)
    if g.encode() != data:
        raise BadInput("%s: re-encoding does not reproduce it byte for byte" % path)
    return g


def poke_scale(g, tname, block, which, raw16):
    """Overwrite the f16 d (which=0) or dmin (which=1) of block `block` of tensor tname."""
    t = g.tensor(tname)
    off = SCALE_OFFSETS[t.type][which]
    pos = t.offset + block * TENSOR_TYPES[t.type][1] + off
    d = bytearray(g.data)
    d[pos:pos + 2] = raw16
    g.data = bytes(d)


def build_kquant_cases(kdir):
    """K-quant and IQ4 cases from llama.cpp's files: [(name, bytes, [expected substrings])]."""
    cases = []
    nan16, inf16, ninf16 = struct.pack("<H", 0x7E00), struct.pack("<H", 0x7C00), struct.pack("<H", 0xFC00)
    mix = load_gguf(os.path.join(kdir, "tiny-mix-Q4_K_M.gguf"))

    def variant(src, fn):
        g = src.copy()
        fn(g)
        return g.encode()

    def set_tensor(src, tname, **kw):
        def f(g):
            t = g.tensor(tname)
            for k, v in kw.items():
                setattr(t, k, v)
        return variant(src, f)

    q = mix.tensor("blk.0.attn_q.weight")
    assert q.type == 12, "blk.0.attn_q.weight of the Q4_K_M file is Q4_K"
    # the same bytes, but rows of 128: not a multiple of the 256-element super-block
    cases.append(("kq_q4_k_row_128", set_tensor(mix, "blk.0.attn_q.weight", ne=[128, q.ne[1] * 2]),
                  ["blk.0.attn_q.weight"]))
    out = mix.tensor("output.weight")
    assert out.type == 14
    cases.append(("kq_q6_k_row_384", set_tensor(mix, "output.weight", ne=[384, out.ne[1]]), ["output.weight"]))
    cases.append(("kq_type_q8_k", set_tensor(mix, "blk.0.attn_q.weight", type=15), ["blk.0.attn_q.weight"]))
    cases.append(("kq_type_iq2_xxs", set_tensor(mix, "blk.0.ffn_up.weight", type=16), ["blk.0.ffn_up.weight"]))
    cases.append(("kq_q4_k_nan_d", variant(mix, lambda g: poke_scale(g, "blk.0.ffn_up.weight", 7, 0, nan16)),
                  ["blk.0.ffn_up.weight"]))
    cases.append(("kq_q4_k_inf_dmin", variant(mix, lambda g: poke_scale(g, "blk.1.attn_k.weight", 0, 1, inf16)),
                  ["blk.1.attn_k.weight"]))
    cases.append(("kq_q6_k_nan_d_output", variant(mix, lambda g: poke_scale(g, "output.weight", 100, 0, nan16)),
                  ["output.weight"]))
    cases.append(("kq_q6_k_inf_d_last_block",
                  variant(mix, lambda g: poke_scale(g, "blk.1.ffn_down.weight",
                                                    g.tensor("blk.1.ffn_down.weight").n_bytes() // 210 - 1, 0,
                                                    ninf16)),
                  ["blk.1.ffn_down.weight"]))
    # truncated inside a K-quant tensor's data
    enc = mix.encode()
    last = sorted(mix.tensors, key=lambda t: t.offset)[-1]
    cases.append(("kq_truncated_in_data", enc[:mix.data_offset + last.offset + 100], [last.name.decode()]))
    # one NaN super-block scale per pure type (d, and dmin where there is one)
    for typ in ("Q2_K", "Q3_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"):
        g0 = load_gguf(os.path.join(kdir, "tiny-pure-%s.gguf" % typ))
        name = "blk.1.ffn_gate.weight"
        cases.append(("kq_%s_nan_d" % typ.lower(), variant(g0, lambda g, name=name: poke_scale(g, name, 3, 0, nan16)),
                      [name]))
        if SCALE_OFFSETS[g0.tensor(name).type][1] is not None:
            cases.append(("kq_%s_inf_dmin" % typ.lower(),
                          variant(g0, lambda g, name=name: poke_scale(g, name, 5, 1, inf16)), [name]))
        if typ == "IQ4_XS":
            t = g0.tensor("blk.0.attn_v.weight")
            cases.append(("kq_iq4_xs_row_32", set_tensor(g0, "blk.0.attn_v.weight", ne=[32, t.ne[1] * 8]),
                          ["blk.0.attn_v.weight"]))
    # a non-first shard given on its own
    sd = os.path.join(kdir, "split")
    with open(os.path.join(sd, "tiny-mix-Q4_K_M-00002-of-00003.gguf"), "rb") as f:
        cases.append(("split_second_shard_alone-00002-of-00003", f.read(), ["split.no"]))
    return cases


def build_split_sets(kdir):
    """Bad split sets from llama-gguf-split's shards: [(name, [(file, bytes)], [expected substrings])]."""
    sd = os.path.join(kdir, "split")
    names = ["tiny-mix-Q4_K_M-%05d-of-00003.gguf" % i for i in (1, 2, 3)]
    shards = [load_gguf(os.path.join(sd, n)) for n in names]
    sets = []

    def edit(i, fn):
        out = []
        for j, (n, g) in enumerate(zip(names, shards)):
            if j == i:
                g = g.copy()
                fn(g)
            out.append((n, g.encode()))
        return out

    def rename_set(prefix):
        return [(n.replace("tiny-mix-Q4_K_M", prefix), g.encode()) for n, g in zip(names, shards)]

    all3 = [(n, g.encode()) for n, g in zip(names, shards)]
    sets.append(("missing_shard", all3[:2], ["00003-of-00003"]))
    sets.append(("missing_middle_shard", [all3[0], all3[2]], ["00002-of-00003"]))
    sets.append(("count_mismatch", edit(1, lambda g: g.set(kv_scalar("split.count", UINT16, 4))),
                 ["00002-of-00003.gguf: split.count"]))
    sets.append(("no_mismatch", edit(2, lambda g: g.set(kv_scalar("split.no", UINT16, 1))),
                 ["00003-of-00003.gguf: split.no"]))
    sets.append(("first_no_not_0", edit(0, lambda g: g.set(kv_scalar("split.no", UINT16, 1))), ["split.no"]))
    sets.append(("tensors_count_mismatch", edit(0, lambda g: g.set(kv_scalar("split.tensors.count", INT32, 22))),
                 ["split.tensors.count"]))
    sets.append(("shard_tensors_count_mismatch",
                 edit(2, lambda g: g.set(kv_scalar("split.tensors.count", INT32, 20))),
                 ["00003-of-00003.gguf: split.tensors.count"]))
    sets.append(("count_0", edit(0, lambda g: g.set(kv_scalar("split.count", UINT16, 0))), ["split.count"]))
    sets.append(("count_string", edit(0, lambda g: g.set(KV(b"split.count", STRING, gstr("3")))),
                 ["split.count"]))
    first_name = shards[0].tensors[0].name
    sets.append(("dup_tensor_across_shards",
                 edit(1, lambda g: setattr(g.tensors[0], "name", first_name)), [first_name.decode()]))
    sets.append(("shard_missing_tensor_info",
                 edit(2, lambda g: (g.tensors.pop(), g.set(kv_scalar("split.tensors.count", INT32, 21)))),
                 ["split.tensors.count"]))
    # a shard that is not a GGUF file at all
    bad = all3[:2] + [(names[2], b"NOTGGUF" + b"\0" * 64)]
    sets.append(("shard_not_gguf", bad, ["00003-of-00003.gguf: magic"]))
    sets.append(("renamed_prefix_ok_but_count_4", [(n.replace("of-00003", "of-00004"), b) for n, b in
                                                   rename_set("x")], ["split.count"]))
    return sets


def main():
    shared = os.environ.get("SHARED") or "../shared"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", default=os.path.join(shared, "models/stories260K/stories260K.gguf"))
    ap.add_argument("-o", "--out", default="build/bad-gguf")
    ap.add_argument("--phidnn", default="config/models/phidnn-fmnist.gguf")
    ap.add_argument("--kquant", default=os.path.join(shared, "models/kquant"))
    args = ap.parse_args()
    try:
        with open(args.input, "rb") as f:
            data = f.read()
        src = Gguf(data)
        if src.encode() != data:
            raise BadInput("re-encoding the input does not reproduce it byte for byte")
        cases = build_cases(src)
    except (OSError, BadInput, struct.error, KeyError, StopIteration) as e:
        print("make_bad.py: %s: %s" % (args.input, e), file=sys.stderr)
        return 2
    if args.phidnn:
        try:
            with open(args.phidnn, "rb") as f:
                data = f.read()
            psrc = Gguf(data)
            if psrc.encode() != data:
                raise BadInput("re-encoding the input does not reproduce it byte for byte")
            cases += build_phidnn_cases(psrc)
        except (OSError, BadInput, struct.error, KeyError, StopIteration) as e:
            print("make_bad.py: %s: %s" % (args.phidnn, e), file=sys.stderr)
            return 2
    split_sets = []
    if os.path.isdir(args.kquant):
        try:
            cases += build_kquant_cases(args.kquant)
            split_sets = build_split_sets(args.kquant)
        except (OSError, BadInput, struct.error, KeyError, StopIteration) as e:
            print("make_bad.py: %s: %s" % (args.kquant, e), file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    for fn in os.listdir(args.out):
        if fn.endswith(".gguf") or fn.endswith(".expect"):
            os.remove(os.path.join(args.out, fn))
        elif fn.startswith("split_") and os.path.isdir(os.path.join(args.out, fn)):
            shutil.rmtree(os.path.join(args.out, fn))
    for name, files, expect in split_sets:
        d = os.path.join(args.out, "split_" + name)
        os.makedirs(d)
        for fn, blob in files:
            with open(os.path.join(d, fn), "wb") as f:
                f.write(blob)
        first = [fn for fn, _ in files if "-00001-of-" in fn][0]
        with open(os.path.join(d, first[:-len(".gguf")] + ".expect"), "w") as f:
            f.write("\n".join(expect) + "\n")
    names = set()
    for name, blob, expect in cases:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(args.out, name + ".gguf"), "wb") as f:
            f.write(blob)
        with open(os.path.join(args.out, name + ".expect"), "w") as f:
            f.write("\n".join(expect) + "\n")
    print("make_bad.py: wrote %d cases and %d split sets to %s" % (len(cases), len(split_sets), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
