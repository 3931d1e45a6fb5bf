"""phidnn_mirror.py - a PyTorch mirror of the served phiDNN, loaded from the exported GGUF.

The weights come from the GGUF file the server loads (config/models/phidnn-fmnist.gguf),
read by the small reader below (stdlib + numpy; GGUF v3, F32 tensors only), never from a
training checkpoint. The forward pass is engine/phidnn.h's:
  off       C_off(x)
  identity  C_id(R_id(x))
  sr        C_sr(R_sr(clip(down2(x) + sigma * n, 0, 1)))     n from phidnn_rng (the C stream)
  inpaint   C_inp(sum_k M_k . R_inp([x . (1 - M_k), M_k]))    M_k the 2x2-grid phases
Noise for the parity check follows the C order exactly (one Rng per request seeded with
`seed`; image b, sample s in order; 14*14 normals row-major per unit). For attacks the
noise/masks can be drawn from torch instead (EOT), and sigma can be overridden (sr at 0).
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "phidnn"))
import phidnn_model as pm  # noqa: E402
from phidnn_rng import Rng  # noqa: E402

MODES = ["off", "identity", "sr", "inpaint"]

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path):
    """Returns (metadata dict, tensors dict name -> np.float32 array shaped numpy-order)."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(_SCALAR[t])

    if buf[:4] != b"GGUF":
        raise ValueError(path + ": not a GGUF file")
    pos = 4
    version, n_t, n_kv = take("<I"), take("<Q"), take("<Q")
    if version != 3:
        raise ValueError("GGUF version %d" % version)
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("<I"))
    infos = []
    for _ in range(n_t):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        typ, off = take("<I"), take("<Q")
        if typ != 0:
            raise ValueError(name + ": only F32 tensors are supported")
        infos.append((name, ne, off))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, off in infos:
        n = int(np.prod(ne))
        a = np.frombuffer(buf, dtype="<f4", count=n, offset=base + off).astype(np.float32)
        tensors[name] = a.reshape(list(reversed(ne)))
    return meta, tensors


def _conv(conv, t, prefix):
    w = t[prefix + ".weight"]  # (cout, cin*9)
    cout, cin = conv.weight.shape[0], conv.weight.shape[1]
    conv.weight.data = torch.from_numpy(w.reshape(cout, cin, 3, 3).copy())
    conv.bias.data = torch.from_numpy(t[prefix + ".bias"].copy())


def _dense(lin, t, prefix):
    lin.weight.data = torch.from_numpy(t[prefix + ".weight"].copy())  # (out, in)
    lin.bias.data = torch.from_numpy(t[prefix + ".bias"].copy())


class Mirror:
    """models[mode] = (R or None, C), eval mode, requires_grad off on the weights."""

    def __init__(self, path="config/models/phidnn-fmnist.gguf"):
        self.meta, t = read_gguf(path)
        m = self.meta
        if m.get("general.architecture") != "phidnn":
            raise ValueError("not a phidnn GGUF")
        rw = tuple(m["phidnn.recreator.widths"])
        cw = tuple(m["phidnn.classifier.widths"])
        self.sigma = float(m["phidnn.sr.sigma"])
        self.scale = int(m["phidnn.sr.scale"])
        self.k = int(m["phidnn.inpaint.k"])
        assert self.scale == 2 and self.k == 4, "mirror supports scale 2, K 4"
        self.modes = list(m["phidnn.modes"])
        self.models = {}
        for mode in self.modes:
            c = pm.Classifier(cw, len(m["phidnn.classes"]))
            for name in ("c1", "c2"):
                _conv(getattr(c, name), t, "%s.c.%s" % (mode, name))
            for name in ("f1", "f2"):
                _dense(getattr(c, name), t, "%s.c.%s" % (mode, name))
            r = None
            if mode != "off":
                r = pm.Recreator(2 if mode == "inpaint" else 1, upsample_input=(mode == "sr"), widths=rw)
                for name, conv, _ in r.layers():
                    _conv(conv, t, "%s.r.%s" % (mode, name))
                r.eval()
                for p in r.parameters():
                    p.requires_grad_(False)
            c.eval()
            for p in c.parameters():
                p.requires_grad_(False)
            self.models[mode] = (r, c)

    # ---- the recreation T + R, differentiable in x
    def recreate(self, mode, x, noise=None, sigma=None, masks=None):
        """x (B,1,28,28). sr: noise (B,1,14,14) N(0,1) or None for fresh torch noise.
        inpaint: masks (B,4,1,28,28) or None for the grid."""
        r, _ = self.models[mode]
        if mode == "off":
            return x
        if mode == "identity":
            return r(x)
        if mode == "sr":
            s = self.sigma if sigma is None else sigma
            if noise is None:
                noise = torch.randn(x.shape[0], 1, 14, 14)
            return r(torch.clamp(F.avg_pool2d(x, 2) + s * noise, 0.0, 1.0))
        if masks is None:
            return pm.recreate_inpaint(r, x)
        out = torch.zeros_like(x)
        for k in range(self.k):
            mk = masks[:, k]
            out = out + mk * r(pm.inpaint_input(x, mk))
        return out

    def logits(self, mode, x, **kw):
        return self.models[mode][1](self.recreate(mode, x, **kw))

    @torch.no_grad()
    def served_probs(self, mode, x, seed, samples=1):
        """The server's answer for one request of images x with parameters seed/samples:
        the C noise stream, probabilities averaged over the samples."""
        b = x.shape[0]
        xs = x.repeat_interleave(samples, dim=0)
        noise = None
        if mode == "sr":
            rng = Rng(seed)
            noise = torch.from_numpy(rng.normals(b * samples * 196).reshape(b * samples, 1, 14, 14))
        lg = self.logits(mode, xs, noise=noise)
        return F.softmax(lg, dim=1).view(b, samples, -1).mean(1)
