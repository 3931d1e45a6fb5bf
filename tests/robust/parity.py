#!/usr/bin/python3
"""parity.py - the PyTorch mirror (weights read from the GGUF) against the C engine over HTTP.

  /usr/bin/python3 tests/robust/parity.py [--n 256] [--saserve build/saserve] [--llm ...]

Starts saserve on 127.0.0.1, sends the first N Fashion-MNIST test images in batches of 64 for
every mode with fixed seeds (samples 1, and samples 3 for sr), and compares the answered
probabilities with the mirror's: max |delta probability| <= 1e-4 per mode, else FAIL.
Prints PASS/FAIL lines and "N passed, N failed".
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import oip  # noqa: E402
import phidnn_mirror as pmir  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=256)
ap.add_argument("--tol", type=float, default=1e-4)
ap.add_argument("--saserve", default=os.environ.get("SASERVE", "build/saserve"))
ap.add_argument("--llm", default=os.environ.get("MODEL", os.path.join(os.environ.get("SHARED", "../shared"),
                                                                         "models/stories260K/stories260K.gguf")))
ap.add_argument("--vision", default=os.environ.get("VISION_MODEL", "config/models/phidnn-fmnist.gguf"))
ap.add_argument("--log", default="/tmp/saserve-parity.log")
a = ap.parse_args()
torch.set_num_threads(2)

mirror = pmir.Mirror(a.vision)
imgs, labels = oip.load_test(a.n)
x = torch.from_numpy(np.frombuffer(b"".join(imgs), dtype=np.uint8).astype(np.float32).reshape(-1, 1, 28, 28) / 255.0)
proc, port = oip.start_server(a.saserve, a.llm, a.vision, a.log)
passed = failed = 0
try:
    cl = oip.Client(port)
    cases = [(m, 1) for m in pmir.MODES] + [("sr", 3)]
    for mode, samples in cases:
        t = time.time()
        worst, agree, bad = 0.0, 0, None
        for i in range(0, a.n, 64):
            seed = 1000 + i
            st, probs, _ = cl.infer([list(im) for im in imgs[i:i + 64]], mode, "UINT8", seed=seed, samples=samples)
            if st != 200:
                bad = "HTTP %d" % st
                break
            ref = mirror.served_probs(mode, x[i:i + 64], seed, samples).numpy()
            got = np.array(probs, dtype=np.float64)
            worst = max(worst, float(np.abs(got - ref).max()))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
        desc = "parity %s samples=%d: %d images, max |dp| = %.2e (tol %.0e), top-1 agree %d/%d (%.1f s)" % (
            mode, samples, a.n, worst, a.tol, agree, a.n, time.time() - t)
        if bad is None and worst <= a.tol:
            passed += 1
            print("PASS " + desc)
        else:
            failed += 1
            print("FAIL " + desc + (" -- " + bad if bad else ""))
finally:
    proc.terminate()
    proc.wait(timeout=20)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
