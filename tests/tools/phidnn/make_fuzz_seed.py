#!/usr/bin/python3
"""make_fuzz_seed.py - a tiny valid phidnn GGUF (4x4 input, widths 2, 2 classes, all four
modes, seeded random weights) for the GGUF fuzzer's corpus: tests/fuzz/corpus/gguf/phidnn-tiny.gguf.
numpy only (no torch)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_write import GGUFWriter, T_STRING, T_UINT32, T_FLOAT32  # noqa: E402


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/gguf/phidnn-tiny.gguf"
    rng = np.random.default_rng(13)
    C, H, W, (r1, r2, r3), (c1, c2, d1), ncls = 1, 4, 4, (2, 2, 2), (2, 2, 2), 2
    w = GGUFWriter()
    w.add_str("general.architecture", "phidnn")
    w.add_str("general.name", "phidnn-tiny")
    w.add_u32("phidnn.input.channels", C)
    w.add_u32("phidnn.input.height", H)
    w.add_u32("phidnn.input.width", W)
    w.add_arr("phidnn.classes", T_STRING, ["a", "b"])
    modes = ["off", "identity", "sr", "inpaint"]
    w.add_arr("phidnn.modes", T_STRING, modes)
    w.add_arr("phidnn.recreator.widths", T_UINT32, [r1, r2, r3])
    w.add_arr("phidnn.classifier.widths", T_UINT32, [c1, c2, d1])
    w.add_u32("phidnn.sr.scale", 2)
    w.add_f32("phidnn.sr.sigma", 0.1)
    w.add_u32("phidnn.inpaint.k", 4)
    w.add_str("phidnn.inpaint.partition", "grid")
    w.add_arr("phidnn.accuracy", T_FLOAT32, [50.0] * 4)

    def conv(name, cin, cout):
        w.add_tensor(name + ".weight", rng.standard_normal((cout, cin * 9)).astype(np.float32) * 0.5, [cin * 9, cout])
        w.add_tensor(name + ".bias", rng.standard_normal(cout).astype(np.float32) * 0.1, [cout])

    def dense(name, n_in, n_out):
        w.add_tensor(name + ".weight", rng.standard_normal((n_out, n_in)).astype(np.float32) * 0.5, [n_in, n_out])
        w.add_tensor(name + ".bias", rng.standard_normal(n_out).astype(np.float32) * 0.1, [n_out])

    for m in modes:
        if m != "off":
            cin = C + 1 if m == "inpaint" else C
            for name, a, b in (("e1", cin, r1), ("e2", r1, r2), ("e3", r2, r2), ("d1", r2, r1), ("d2", r1, r3),
                               ("d3", r3, C)):
                conv(f"{m}.r.{name}", a, b)
        conv(f"{m}.c.c1", C, c1)
        conv(f"{m}.c.c2", c1, c2)
        dense(f"{m}.c.f1", c2 * (H // 4) * (W // 4), d1)
        dense(f"{m}.c.f2", d1, ncls)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    w.write(out)
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
