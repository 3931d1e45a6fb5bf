#!/usr/bin/python3
"""train.py - train the phiDNN models on Fashion-MNIST (offline, seeded, CPU).

  /usr/bin/python3 tests/tools/phidnn/train.py --out build/phidnn [--seed 13]

Trains C_clean on clean images; R_id (no corruption), R_sr (area down x2 +
N(0, 0.1^2) noise, clip), R_inp (2x2-grid phase masks mixed 50/50 with random
4-way partitions, MSE on the removed pixels); then one classifier per recreation
with its R frozen, initialised from C_clean's weights. Writes OUT/state.pt and
OUT/train.json (seed, epochs, per-model wall time, dataset sha256).
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import phidnn_model as pm


def batches(n, bs, gen):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, bs):
        yield perm[i:i + bs]


def train_classifier(c, xs, ys, epochs, lr, gen, transform=None, log=""):
    opt = torch.optim.Adam(c.parameters(), lr=lr)
    for ep in range(epochs):
        tot = 0.0
        for idx in batches(len(xs), 128, gen):
            x = xs[idx]
            if transform is not None:
                with torch.no_grad():
                    x = transform(x)
            loss = F.cross_entropy(c(x), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
        print(f"  {log} epoch {ep}: loss {tot / len(xs):.4f}", flush=True)


def train_recreator(r, xs, epochs, lr, gen, mode):
    opt = torch.optim.Adam(r.parameters(), lr=lr)
    masks = pm.grid_masks()
    for ep in range(epochs):
        tot = 0.0
        for idx in batches(len(xs), 128, gen):
            x = xs[idx]
            b = len(idx)
            if mode == "identity":
                loss = F.mse_loss(r(x), x)
            elif mode == "sr":
                noise = torch.randn(b, 1, 14, 14, generator=gen)
                loss = F.mse_loss(r(pm.sr_corrupt(x, noise)), x)
            else:
                k = torch.randint(0, pm.INP_K, (b,), generator=gen)
                grid = masks[k]
                part = torch.randint(0, pm.INP_K, (b, 1, 28, 28), generator=gen)
                rnd = (part == k.view(b, 1, 1, 1)).float()
                use_grid = (torch.rand(b, 1, 1, 1, generator=gen) < 0.5).float()
                m = use_grid * grid + (1 - use_grid) * rnd
                y = r(pm.inpaint_input(x, m))
                loss = ((y - x) ** 2 * m).sum() / m.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * b
        print(f"  R_{mode} epoch {ep}: mse {tot / len(xs):.5f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/phidnn")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--epochs-c", type=int, default=3)
    ap.add_argument("--epochs-r", type=int, default=2)
    ap.add_argument("--epochs-cr", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)

    xs = torch.from_numpy(pm.load_idx("train_x")[:a.n_train].astype(np.float32) / 255.0).unsqueeze(1)
    ys = torch.from_numpy(pm.load_idx("train_y")[:a.n_train].astype(np.int64))
    info = {"seed": a.seed, "threads": a.threads, "n_train": a.n_train,
            "epochs": {"classifier": a.epochs_c, "recreator": a.epochs_r,
                       "classifier_on_recreation": a.epochs_cr},
            "dataset_sha256": pm.dataset_checksums(), "train_seconds": {},
            "torch": torch.__version__}
    state = {}

    t = time.time()
    c_clean = pm.Classifier()
    train_classifier(c_clean, xs, ys, a.epochs_c, 1e-3, gen, log="C_clean")
    info["train_seconds"]["C_clean"] = round(time.time() - t, 1)
    state["clean.c"] = c_clean.state_dict()

    recs = {}
    for mode, cin, up in (("identity", 1, False), ("sr", 1, True), ("inpaint", 2, False)):
        t = time.time()
        r = pm.Recreator(cin, upsample_input=up)
        train_recreator(r, xs, a.epochs_r, 2e-3, gen, mode)
        info["train_seconds"]["R_" + mode] = round(time.time() - t, 1)
        r.eval()
        for p in r.parameters():
            p.requires_grad_(False)
        recs[mode] = r
        state[mode + ".r"] = r.state_dict()

    for mode, r in recs.items():
        t = time.time()
        c = pm.Classifier()
        c.load_state_dict(c_clean.state_dict())
        if mode == "identity":
            tf = lambda x, r=r: r(x)
        elif mode == "sr":
            tf = lambda x, r=r: r(pm.sr_corrupt(x, torch.randn(x.shape[0], 1, 14, 14, generator=gen)))
        else:
            tf = lambda x, r=r: pm.recreate_inpaint(r, x)
        train_classifier(c, xs, ys, a.epochs_cr, 5e-4, gen, transform=tf, log="C_" + mode)
        info["train_seconds"]["C_" + mode] = round(time.time() - t, 1)
        state[mode + ".c"] = c.state_dict()

    torch.save(state, os.path.join(a.out, "state.pt"))
    with open(os.path.join(a.out, "train.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info["train_seconds"]))


if __name__ == "__main__":
    main()
