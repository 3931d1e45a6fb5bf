"""gguf_write.py - a minimal GGUF v3 writer (metadata + F32 tensors).

Knows only the file format (see engine/gguf.h): header, key/values, tensor
infos, padding to general.alignment, tensor data. Nothing model-specific.
"""
import struct

import numpy as np

T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, \
    T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)
GGML_F32 = 0
ALIGN = 32

_SCALAR = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
           T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
           T_FLOAT64: "<d"}


def _str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


class GGUFWriter:
    def __init__(self):
        self.kv = []        # (key, type, value, elem_type)
        self.tensors = []   # (name, array float32, dims)

    def add(self, key, typ, value, elem_type=None):
        if any(k == key for k, _, _, _ in self.kv):
            raise ValueError("duplicate key " + key)
        self.kv.append((key, typ, value, elem_type))

    def add_str(self, key, v): self.add(key, T_STRING, v)
    def add_u32(self, key, v): self.add(key, T_UINT32, int(v))
    def add_f32(self, key, v): self.add(key, T_FLOAT32, float(v))
    def add_arr(self, key, elem_type, values): self.add(key, T_ARRAY, list(values), elem_type)

    def add_tensor(self, name, arr, ne):
        """ne is GGUF order: ne[0] is the contiguous dimension (numpy's last axis)."""
        a = np.ascontiguousarray(arr, dtype="<f4")
        n = 1
        for d in ne:
            n *= d
        if a.size != n:
            raise ValueError(f"{name}: {a.size} elements but ne={ne}")
        self.tensors.append((name, a, list(ne)))

    @staticmethod
    def _value(typ, v, elem_type):
        if typ == T_STRING:
            return _str(v)
        if typ == T_ARRAY:
            out = struct.pack("<IQ", elem_type, len(v))
            for e in v:
                out += GGUFWriter._value(elem_type, e, None)
            return out
        return struct.pack(_SCALAR[typ], v)

    def to_bytes(self):
        out = bytearray(b"GGUF")
        out += struct.pack("<IQQ", 3, len(self.tensors), len(self.kv) + 1)
        out += _str("general.alignment") + struct.pack("<II", T_UINT32, ALIGN)
        for key, typ, v, et in self.kv:
            out += _str(key) + struct.pack("<I", typ) + self._value(typ, v, et)
        offset = 0
        offsets = []
        for name, a, ne in self.tensors:
            offsets.append(offset)
            out += _str(name) + struct.pack("<I", len(ne))
            for d in ne:
                out += struct.pack("<Q", d)
            out += struct.pack("<IQ", GGML_F32, offset)
            offset += a.nbytes
            offset = (offset + ALIGN - 1) // ALIGN * ALIGN
        out += b"\0" * ((-len(out)) % ALIGN)
        base = len(out)
        for (name, a, ne), off in zip(self.tensors, offsets):
            out += b"\0" * (base + off - len(out))
            out += a.tobytes()
        out += b"\0" * ((-len(out)) % ALIGN)
        return bytes(out)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())
