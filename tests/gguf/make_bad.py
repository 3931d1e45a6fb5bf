#!/usr/bin/env python3
"""make_bad.py - crafted bad GGUF files for RELIABILITY.md A1-A6 and model-level checks.

usage: make_bad.py [INPUT.gguf] [--phidnn PHIDNN.gguf] [-o OUTDIR]

INPUT defaults to $SHARED/models/stories260K/stories260K.gguf (SHARED defaults
to ../shared); PHIDNN (the phidnn-architecture cases, named phidnn_*) to
config/models/phidnn-fmnist.gguf ("" skips them); OUTDIR defaults to build/bad-gguf. Every case is written as
OUTDIR/NAME.gguf next to OUTDIR/NAME.expect: one substring per line that the
one-line error of `saserve check-model NAME.gguf` must contain (if there are
several lines, any one of them is enough). The substrings name the field that
is wrong: a header field, a metadata key or a tensor name.

Old *.gguf / *.expect files in OUTDIR are removed first. Python 3 stdlib only.
"""
import argparse
import os
import struct
import sys

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FMT = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f",
              BOOL: "B", UINT64: "Q", INT64: "q", FLOAT64: "d"}
# ggml tensor types this project supports: (block elements, block bytes)
TENSOR_TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18)}
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


def main():
    shared = os.environ.get("SHARED") or "../shared"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", default=os.path.join(shared, "models/stories260K/stories260K.gguf"))
    ap.add_argument("-o", "--out", default="build/bad-gguf")
    ap.add_argument("--phidnn", default="config/models/phidnn-fmnist.gguf")
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
    os.makedirs(args.out, exist_ok=True)
    for fn in os.listdir(args.out):
        if fn.endswith(".gguf") or fn.endswith(".expect"):
            os.remove(os.path.join(args.out, fn))
    names = set()
    for name, blob, expect in cases:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(args.out, name + ".gguf"), "wb") as f:
            f.write(blob)
        with open(os.path.join(args.out, name + ".expect"), "w") as f:
            f.write("\n".join(expect) + "\n")
    print("make_bad.py: wrote %d cases to %s" % (len(cases), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
