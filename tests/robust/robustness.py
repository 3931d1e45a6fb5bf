#!/usr/bin/python3
"""robustness.py - adaptive evaluation of the served phiDNN (issue 14): white-box attacks on the
PyTorch mirror (weights from the GGUF the server loads; tests/robust/parity.py checks it against
the C engine), ablations, adversarial training baselines, the black-box attack through the
running server, the sanity checks, a JSON file, a markdown block and a PNG.

  /usr/bin/python3 tests/robust/robustness.py            # the scaled-down default (see --help)
  /usr/bin/python3 tests/robust/robustness.py --full     # the issue's full size (hours on 2 cores)

Threat model: L-inf, pixels in [0, 1], eps in {0.05, 0.1, 0.2}. Defences (f = C(R(T(x)))):
  off          C_off alone (served, recreate=off)
  identity     C_id(R_id(x)), no corruption (served)
  inpaint      2x2-grid inpainting (served default partition: deterministic)
  sr           area down x2 + N(0, 0.1^2) noise, R_sr up-scales (served; random)
  sr-nonoise   the served sr R and classifier with sigma = 0 at inference (mirror only: the
               server's sigma is a file key, so this one is not served)
  phidnn-at    sr phiDNN whose classifier is fine-tuned with PGD adversarial training through the
               frozen R_sr and the noise (the paper's adversarial-training variation; mirror only)
  pgd-at       C_off fine-tuned with plain PGD adversarial training, no recreation (mirror only)
The two adversarially trained classifiers are trained here (seeded, small budget: --train-n
images, --train-epochs, PGD-5 at eps 0.1) and kept under build/robust/ (not committed, not served).

Attacks: FGSM and PGD-K (step eps/10... see --steps; random start; --restarts, an image counts as
robust only if every restart fails) (a) on the undefended C_off; (b) transfer of (a)'s examples to
every defence; (c) white-box adaptive: gradients through R and C, EOT over the noise (--eot draws
per step) for the random defences; (d) BPDA: identity backward through R(T(.)); (e) black-box
Square-Attack random search through the running server (tests/robust/blackbox.py). Random
defences are evaluated with one fresh draw per image (what one request with samples=1 sees).
"worst" = an image is robust only if it survives every attack run on that defence.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "phidnn"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import phidnn_mirror as pmir  # noqa: E402
import phidnn_model as pm  # noqa: E402
from blackbox import wilson  # noqa: E402

EPS = [0.05, 0.1, 0.2]


class Defence:
    def __init__(self, name, mirror, mode, clf=None, sigma=None, random=False, served=None):
        self.name, self.mirror, self.mode = name, mirror, mode
        self.r = mirror.models[mode][0]
        self.c = clf if clf is not None else mirror.models[mode][1]
        self.sigma = sigma
        self.random = random
        self.served = served  # the server's recreate= value, or None

    def rec(self, x, gen):
        if self.mode == "sr":
            noise = torch.randn(x.shape[0], 1, 14, 14, generator=gen)
            return self.mirror.recreate("sr", x, noise=noise, sigma=self.sigma)
        return self.mirror.recreate(self.mode, x)

    def logits(self, x, gen, bpda=False):
        xh = self.rec(x, gen)
        if bpda:  # forward R(T(x)), backward identity
            xh = x + (xh - x).detach()
        return self.c(xh)

    @torch.no_grad()
    def predict(self, x, gen, bs=500):
        return torch.cat([self.logits(x[i:i + bs], gen).argmax(1) for i in range(0, len(x), bs)])


def grad(defence, x, y, gen, eot=1, bpda=False, bs=2000):
    """d mean-over-draws CE / dx, EOT over eot draws (one batch of x repeated)."""
    g = torch.zeros_like(x)
    per = max(1, bs // eot)
    for i in range(0, len(x), per):
        xb = x[i:i + per].clone().requires_grad_(True)
        xr = xb.repeat_interleave(eot, dim=0)
        loss = F.cross_entropy(defence.logits(xr, gen, bpda), y[i:i + per].repeat_interleave(eot), reduction="sum")
        g[i:i + per], = torch.autograd.grad(loss, xb)
    return g


def fgsm(defence, x, y, eps, gen, eot=1, bpda=False):
    return torch.clamp(x + eps * grad(defence, x, y, gen, eot, bpda).sign(), 0, 1)


def pgd(defence, x, y, eps, steps, gen, eot=1, bpda=False, step=None):
    step = eps / 10 if step is None else step
    xa = torch.clamp(x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps, 0, 1)
    for _ in range(steps):
        xa = xa + step * grad(defence, xa, y, gen, eot, bpda).sign()
        xa = torch.clamp(torch.min(torch.max(xa, x - eps), x + eps), 0, 1)
    return xa


# ---------------------------------------------------------------- adversarial training
def adv_train(c, rec, xs, ys, n_train, epochs, eps, steps, seed, log):
    """Fine-tune classifier c with PGD-`steps` (step 2.5 eps/steps, random start) through the frozen
    recreation `rec(x, gen)` (identity for plain AT); adversarial examples only (Madry et al.)."""
    sys.path.insert(0, os.path.join(HERE, "..", "tools", "phidnn"))
    from train import batches  # the training script's batch order (seeded randperm)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(c.parameters(), lr=5e-4)
    xs, ys = xs[:n_train], ys[:n_train]
    for p in c.parameters():
        p.requires_grad_(True)
    step = 2.5 * eps / steps
    for ep in range(epochs):
        tot = 0.0
        for idx in batches(len(xs), 128, gen):
            x, y = xs[idx], ys[idx]
            c.eval()
            xa = torch.clamp(x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps, 0, 1)
            for _ in range(steps):
                xa.requires_grad_(True)
                loss = F.cross_entropy(c(rec(xa, gen)), y)
                g, = torch.autograd.grad(loss, xa)
                xa = torch.clamp(torch.min(torch.max(xa.detach() + step * g.sign(), x - eps), x + eps), 0, 1)
            c.train()
            with torch.no_grad():
                xh = rec(xa, gen)
            loss = F.cross_entropy(c(xh), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
        print("  %s epoch %d: adversarial loss %.4f" % (log, ep, tot / len(xs)), flush=True)
    c.eval()
    for p in c.parameters():
        p.requires_grad_(False)
    return c


def load_or_train(name, init_c, rec, a, xs, ys):
    os.makedirs(a.build, exist_ok=True)
    cfg = {"n_train": a.train_n, "epochs": a.train_epochs, "eps": 0.1, "pgd_steps": 5, "seed": a.seed,
           "init": name, "data_sha256": pm.dataset_checksums()}
    path = os.path.join(a.build, name + ".pt")
    if os.path.exists(path):
        st = torch.load(path)
        if st.get("cfg") == cfg:
            c = pm.Classifier()
            c.load_state_dict(st["state"])
            c.eval()
            for p in c.parameters():
                p.requires_grad_(False)
            return c, st["cfg"], st["seconds"], True
    c = pm.Classifier()
    c.load_state_dict(init_c.state_dict())
    t = time.time()
    adv_train(c, rec, xs, ys, a.train_n, a.train_epochs, 0.1, 5, a.seed, name)
    sec = round(time.time() - t, 1)
    torch.save({"cfg": cfg, "state": c.state_dict(), "seconds": sec}, path)
    return c, cfg, sec, False


# ---------------------------------------------------------------- results
def entry(correct_mask, clean_mask):
    n = len(correct_mask)
    k = int(correct_mask.sum())
    nc = int(clean_mask.sum())
    broken = int((clean_mask & ~correct_mask).sum())
    return {"n": n, "robust_correct": k, "robust_accuracy": k / n, "robust_accuracy_ci95": wilson(k, n),
            "clean_correct": nc, "attack_success_rate": broken / nc if nc else 0.0,
            "attack_success_ci95": wilson(broken, nc)}


def fmt_ci(v, ci):
    return "%.1f [%.1f, %.1f]" % (100 * v, 100 * ci[0], 100 * ci[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the issue's full size: n 1000, EOT 20, restarts 2, "
                    "black-box 100 images x 1000 queries, every served mode")
    ap.add_argument("--n", type=int, default=200, help="test images (the first N)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--restarts", type=int, default=2, help="PGD restarts on the deterministic defences")
    ap.add_argument("--restarts-slow", type=int, default=1,
                    help="PGD restarts on the defences with a recreation network (identity, inpaint, sr-nonoise)")
    ap.add_argument("--restarts-random", type=int, default=1, help="PGD restarts on the random (EOT) defences")
    ap.add_argument("--eot", type=int, default=5, help="EOT draws per step on the random defences")
    ap.add_argument("--n-adaptive-slow", type=int, default=100,
                    help="images for the costly white-box runs (every defence with a recreation network R, BPDA)")
    ap.add_argument("--train-n", type=int, default=4000)
    ap.add_argument("--train-epochs", type=int, default=2)
    ap.add_argument("--bb-n", type=int, default=30)
    ap.add_argument("--bb-queries", type=int, default=300)
    ap.add_argument("--bb-modes", default="off,sr,inpaint")
    ap.add_argument("--no-blackbox", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (<= 2 here; 1 measured 2-5x faster than 2 on the shared 2-core machine)")
    ap.add_argument("--build", default="build/robust")
    ap.add_argument("--saserve", default=os.environ.get("SASERVE", "build/saserve"))
    ap.add_argument("--llm", default=os.environ.get("MODEL", os.path.join(os.environ.get("SHARED", "../shared"),
                                                                             "models/stories260K/stories260K.gguf")))
    ap.add_argument("--vision", default="config/models/phidnn-fmnist.gguf")
    ap.add_argument("--json", default="tests/eval/results/robustness.json")
    ap.add_argument("--md", default="tests/eval/results/robustness.md")
    ap.add_argument("--png", default="tests/eval/results/robustness.png")
    ap.add_argument("--from-json", action="store_true", help="only rewrite the markdown, README block and PNG "
                    "from an existing --json")
    a = ap.parse_args()
    if a.from_json:
        with open(a.json) as f:
            res = json.load(f)
        write_md(res, a)
        write_png(res, a)
        return
    if a.full:
        a.n, a.n_adaptive_slow, a.eot, a.restarts, a.restarts_random, a.restarts_slow = 1000, 1000, 20, 2, 2, 2
        a.bb_n, a.bb_queries, a.bb_modes = 100, 1000, "off,identity,sr,inpaint"
        a.train_n, a.train_epochs = 60000, 3
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_all = time.time()
    params = {k: v for k, v in vars(a).items() if k not in ("json", "md", "png", "saserve", "llm", "build")}
    print("parameters: " + json.dumps(params), flush=True)

    mirror = pmir.Mirror(a.vision)
    tx = torch.from_numpy(pm.load_idx("test_x")[:a.n].astype(np.float32) / 255.0).unsqueeze(1)
    ty = torch.from_numpy(pm.load_idx("test_y")[:a.n].astype(np.int64))
    trx = torch.from_numpy(pm.load_idx("train_x")[:a.train_n].astype(np.float32) / 255.0).unsqueeze(1)
    try_ = torch.from_numpy(pm.load_idx("train_y")[:a.train_n].astype(np.int64))

    # adversarially trained baselines (build/robust, seeded)
    train_info = {}
    c_at, cfg, sec, cached = load_or_train("pgd-at", mirror.models["off"][1], lambda x, g: x, a, trx, try_)
    train_info["pgd-at"] = {"cfg": cfg, "train_seconds": sec, "cached": cached}
    sr_def = Defence("sr", mirror, "sr")
    c_pat, cfg, sec, cached = load_or_train("phidnn-at", mirror.models["sr"][1], lambda x, g: sr_def.rec(x, g),
                                            a, trx, try_)
    train_info["phidnn-at"] = {"cfg": cfg, "train_seconds": sec, "cached": cached}
    print("adversarial training: " + json.dumps({k: (v["train_seconds"], v["cached"]) for k, v in train_info.items()}),
          flush=True)

    defs = [Defence("off", mirror, "off", served="off"),
            Defence("identity", mirror, "identity", served="identity"),
            Defence("inpaint", mirror, "inpaint", served="inpaint"),
            Defence("sr", mirror, "sr", random=True, served="sr"),
            Defence("sr-nonoise", mirror, "sr", sigma=0.0),
            Defence("phidnn-at", mirror, "sr", clf=c_pat, random=True),
            Defence("pgd-at", mirror, "off", clf=c_at)]
    gen = torch.Generator().manual_seed(a.seed)
    res = {"parameters": params, "adversarial_training": train_info, "defences": {}, "sanity": []}
    clean_mask, worst = {}, {}
    for d in defs:
        pred = d.predict(tx, gen)
        clean_mask[d.name] = (pred == ty).numpy()
        worst[d.name] = {e: clean_mask[d.name].copy() for e in EPS}
        k = int(clean_mask[d.name].sum())
        res["defences"][d.name] = {"served": d.served, "random": d.random,
                                   "clean_accuracy": k / a.n, "clean_ci95": wilson(k, a.n), "attacks": {}}
        print("clean %-10s %.1f %%" % (d.name, 100 * k / a.n), flush=True)

    def record(d, attack, eps, correct, n_used, detail):
        cm = clean_mask[d.name][:n_used]
        e = entry(correct, cm)
        e.update(detail)
        res["defences"][d.name]["attacks"].setdefault(attack, {})["%g" % eps] = e
        w = worst[d.name][eps]
        w[:n_used] &= correct
        w[n_used:] = w[n_used:]  # images beyond n_used: not attacked by this one
        print("  %-10s %-22s eps %.2f: n %d robust acc %s success %s (%.0f s)" % (
            d.name, attack, eps, n_used, fmt_ci(e["robust_accuracy"], e["robust_accuracy_ci95"]),
            fmt_ci(e["attack_success_rate"], e["attack_success_ci95"]), detail.get("seconds", 0)), flush=True)
        return e

    def evaluate(d, xa_list, n_used):
        ok = np.ones(n_used, dtype=bool)
        for xa in xa_list:
            ok &= (d.predict(xa, gen) == ty[:n_used]).numpy()
        return ok

    off = defs[0]
    # (a) the undefended classifier and (b) transfer of its examples
    for eps in EPS:
        t = time.time()
        xf = fgsm(off, tx, ty, eps, gen)
        xp = [pgd(off, tx, ty, eps, a.steps, gen) for _ in range(a.restarts)]
        sec = time.time() - t
        for d in defs:
            name_f = "FGSM" if d.name == "off" else "transfer FGSM(off)"
            name_p = "PGD-%d" % a.steps if d.name == "off" else "transfer PGD-%d(off)" % a.steps
            record(d, name_f, eps, evaluate(d, [xf], a.n), a.n, {"seconds": sec if d.name == "off" else 0})
            record(d, name_p, eps, evaluate(d, xp, a.n), a.n,
                   {"restarts": a.restarts, "steps": a.steps, "seconds": sec if d.name == "off" else 0})

    # (c) white-box adaptive (EOT on random defences) and (d) BPDA
    for d in defs[1:]:
        slow = d.r is not None
        n_used = a.n_adaptive_slow if slow else a.n
        x, y = tx[:n_used], ty[:n_used]
        eot = a.eot if d.random else 1
        rs = a.restarts_random if d.random else (a.restarts_slow if slow else a.restarts)
        for eps in EPS:
            t = time.time()
            xf = fgsm(d, x, y, eps, gen, eot)
            record(d, "FGSM adaptive" + (" EOT-%d" % eot if d.random else ""), eps, evaluate(d, [xf], n_used),
                   n_used, {"eot": eot, "seconds": time.time() - t})
            t = time.time()
            xp = [pgd(d, x, y, eps, a.steps, gen, eot) for _ in range(rs)]
            record(d, "PGD-%d adaptive" % a.steps + (" EOT-%d" % eot if d.random else ""), eps,
                   evaluate(d, xp, n_used), n_used,
                   {"eot": eot, "restarts": rs, "steps": a.steps, "seconds": time.time() - t})
            if d.r is not None:
                nb = n_used
                t = time.time()
                xb = [pgd(d, x[:nb], y[:nb], eps, a.steps, gen, 1, bpda=True)]
                record(d, "PGD-%d BPDA" % a.steps, eps, evaluate(d, xb, nb), nb,
                       {"restarts": 1, "steps": a.steps, "seconds": time.time() - t})

    # (e) the black-box attack through the running server
    bb = []
    if not a.no_blackbox:
        t = time.time()
        out = os.path.join(a.build, "blackbox.json")
        cmd = [sys.executable, os.path.join(HERE, "blackbox.py"), "--saserve", a.saserve, "--llm", a.llm,
               "--vision", a.vision, "--modes", a.bb_modes, "--eps", ",".join("%g" % e for e in EPS),
               "--n", str(a.bb_n), "--queries", str(a.bb_queries), "--seed", str(a.seed), "--json", out,
               "--check"]
        print("black-box: " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        with open(out) as f:
            bb = json.load(f)
        res["blackbox"] = {"command": cmd, "rc": rc, "seconds": round(time.time() - t, 1), "runs": bb}
        for r in bb:
            d = next(d for d in defs if d.served == r["mode"])
            e = {"n": r["n"], "robust_correct": r["robust_correct"], "robust_accuracy": r["robust_accuracy"],
                 "robust_accuracy_ci95": r["robust_accuracy_ci95"], "clean_correct": r["clean_correct"],
                 "attack_success_rate": r["attack_success_rate"], "attack_success_ci95": r["attack_success_ci95"],
                 "queries": r["queries_max"], "images_per_s": r["images_per_s"],
                 "latency_p99_ms": r["latency_p99_ms"], "statuses": r["statuses"]}
            res["defences"][d.name]["attacks"].setdefault("black-box Square (server)", {})["%g" % r["eps"]] = e

    # worst case over every attack run on each defence (images beyond a run's n count as attacked by
    # the others only); reported on the first n_adaptive_slow images, which every attack covered
    nw = min(a.n, a.n_adaptive_slow)
    for d in defs:
        for eps in EPS:
            e = entry(worst[d.name][eps][:nw], clean_mask[d.name][:nw])
            res["defences"][d.name]["attacks"].setdefault("worst case (white-box)", {})["%g" % eps] = e

    # ---------------------------------------------------------------- sanity checks
    def sanity(ok, text):
        line = ("OK   " if ok else "WARN ") + text
        res["sanity"].append(line)
        print("sanity: " + line, flush=True)

    for d in defs:
        accs = [res["defences"][d.name]["attacks"]["worst case (white-box)"]["%g" % e]["robust_accuracy"] for e in EPS]
        mono = all(accs[i + 1] <= accs[i] + 1e-9 for i in range(len(accs) - 1))
        sanity(mono, "%s: white-box accuracy (clean on all images, then worst case) falls as eps grows: %s" % (
            d.name, " -> ".join("%.1f%%" % (100 * v) for v in
                                [res["defences"][d.name]["clean_accuracy"]] + accs)))
    nu = min(a.n, 50)
    for d in defs:
        if d.name in ("sr-nonoise",):
            continue
        t = time.time()
        eot = a.eot if d.random else 1
        xa = pgd(d, tx[:nu], ty[:nu], 1.0, 20, gen, eot, step=0.1)
        acc = float((d.predict(xa, gen) == ty[:nu]).float().mean())
        res["defences"][d.name]["unbounded_pgd_accuracy"] = acc
        sanity(acc <= 0.02, "%s: unbounded PGD-20 (eps 1, step 0.1, EOT %d, %d images): accuracy %.1f%% "
                            "(success ~100%% expected) (%.0f s)" % (d.name, eot, nu, 100 * acc, time.time() - t))
    for r in bb:
        d = next(d for d in defs if d.served == r["mode"])
        # compare on the images both saw: the black-box ran on the first bb_n
        wmask = worst[d.name][r["eps"]][:r["n"]]
        cm = clean_mask[d.name][:r["n"]]
        wb_s = float((cm & ~wmask).sum()) / max(1, int(cm.sum()))
        bb_s = r["attack_success_rate"]
        ok = wb_s >= bb_s
        sanity(ok, "%s eps %g: white-box success %.1f%% >= gradient-free black-box success %.1f%% (first %d images)%s" % (
            d.name, r["eps"], 100 * wb_s, 100 * bb_s, r["n"], "" if ok else " -- gradient masking suspected"))
    # EOT vs a single draw, on sr at eps 0.1
    for dn in ("sr", "phidnn-at"):
        d = next(x for x in defs if x.name == dn)
        n1 = a.n_adaptive_slow
        t = time.time()
        x1 = pgd(d, tx[:n1], ty[:n1], 0.1, a.steps, gen, 1)
        ok1 = (d.predict(x1, gen) == ty[:n1]).numpy()
        acc1 = float(ok1.mean())
        acck = res["defences"][dn]["attacks"]["PGD-%d adaptive EOT-%d" % (a.steps, a.eot)]["0.1"]
        if a.restarts_random > 1:
            note = " (EOT run has %d restarts)" % a.restarts_random
        else:
            note = ""
        res["defences"][dn]["attacks"].setdefault("PGD-%d adaptive single draw" % a.steps, {})["0.1"] = entry(
            ok1, clean_mask[dn][:n1])
        sanity(acck["robust_accuracy"] <= acc1 + 1e-9,
               "%s eps 0.1: PGD-%d with EOT-%d accuracy %.1f%% vs a single draw per step %.1f%%%s (%.0f s)" % (
                   dn, a.steps, a.eot, 100 * acck["robust_accuracy"], 100 * acc1, note, time.time() - t))
    for d in defs:
        if d.r is None:
            continue
        for eps in EPS:
            at = res["defences"][d.name]["attacks"]
            full = at[[k for k in at if k.startswith("PGD-%d adaptive" % a.steps) and "single" not in k][0]]["%g" % eps]
            bp = at["PGD-%d BPDA" % a.steps]["%g" % eps]
            ok = bp["attack_success_rate"] <= full["attack_success_rate"] + 1e-9
            sanity(ok, "%s eps %g: full-gradient PGD success %.1f%% >= BPDA success %.1f%%%s" % (
                d.name, eps, 100 * full["attack_success_rate"], 100 * bp["attack_success_rate"],
                "" if ok else " -- gradient masking suspected in the full gradient"))
    res["seconds"] = round(time.time() - t_all, 1)
    print("total %.0f s" % res["seconds"], flush=True)

    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    write_md(res, a)
    write_png(res, a)


ORDER = ["off", "identity", "inpaint", "sr", "sr-nonoise", "phidnn-at", "pgd-at"]


def write_md(res, a):
    p = res["parameters"]
    L = []
    L.append("Written by `make robustness` (`tests/robust/robustness.py`) in %.0f s, %d torch thread(s). "
             "Scaled-down run: %d test images (the white-box runs on every defence with a recreation network "
             "R — identity, inpaint, sr, sr-nonoise, phidnn-at — on the first %d), PGD-%d step ε/10 with random start, %d restarts (off, pgd-at) / %d (identity, "
             "inpaint, sr-nonoise) / %d (random: sr, phidnn-at), EOT %d draws per step, black-box %d images × ≤ %d queries on %s, seed %d; "
             "adversarial training on %d train images × %d epochs (PGD-5, ε 0.1). Full size: "
             "`/usr/bin/python3 tests/robust/robustness.py --full`. Percentages with 95%% Wilson intervals."
             % (res["seconds"], p["threads"], p["n"], p["n_adaptive_slow"], p["steps"], p["restarts"],
                p["restarts_slow"], p["restarts_random"], p["eot"], p["bb_n"], p["bb_queries"], p["bb_modes"], p["seed"],
                p["train_n"], p["train_epochs"]))
    L.append("")
    L.append("Robust accuracy, worst case over every white-box attack (FGSM, PGD, transfer, adaptive/EOT, BPDA), "
             "first %d images:" % min(p["n"], p["n_adaptive_slow"]))
    L.append("")
    L.append("| defence | served | clean (all %d) | ε 0.05 | ε 0.1 | ε 0.2 | unbounded PGD-20 (first %d) |" % (
        p["n"], min(p["n"], 50)))
    L.append("|---|---|---|---|---|---|---|")
    for name in ORDER:
        d = res["defences"][name]
        w = d["attacks"]["worst case (white-box)"]
        ub = d.get("unbounded_pgd_accuracy")
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, "`?recreate=%s`" % d["served"] if d["served"] else "mirror only",
            fmt_ci(d["clean_accuracy"], d["clean_ci95"]),
            *[fmt_ci(w["%g" % e]["robust_accuracy"], w["%g" % e]["robust_accuracy_ci95"]) for e in EPS],
            "%.1f" % (100 * ub) if ub is not None else "-"))
    L.append("")
    L.append("Every attack: robust accuracy / attack success rate (of the clean-correct images), %; n = images.")
    L.append("")
    L.append("| defence | attack | n | ε 0.05 acc | ε 0.05 success | ε 0.1 acc | ε 0.1 success | ε 0.2 acc | ε 0.2 success |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name in ORDER:
        for att, by in res["defences"][name]["attacks"].items():
            if att == "worst case (white-box)":
                continue
            cells = []
            n = None
            for e in EPS:
                r = by.get("%g" % e)
                if r is None:
                    cells += ["-", "-"]
                    continue
                n = r["n"]
                cells += [fmt_ci(r["robust_accuracy"], r["robust_accuracy_ci95"]),
                          fmt_ci(r["attack_success_rate"], r["attack_success_ci95"])]
            L.append("| %s | %s | %s | %s |" % (name, att, n, " | ".join(cells)))
    if "blackbox" in res:
        L.append("")
        L.append("Black-box attack through the server (%.0f s): " % res["blackbox"]["seconds"] + "; ".join(
            "%s ε %g: %d requests, %.0f images/s, p99 %.1f ms, statuses %s, /metrics delta %s (+%d images, %d sent)"
            % (r["mode"], r["eps"], r["requests"], r["images_per_s"], r["latency_p99_ms"], r["statuses"],
               r["metrics_delta"], r["metrics_images_delta"], r["images_queried"]) for r in res["blackbox"]["runs"]))
    L.append("")
    L.append("Sanity checks:")
    L.append("")
    for s in res["sanity"]:
        L.append("    " + s)
    L.append("")
    L.append("![robust accuracy against ε per defence](%s)" % a.png)
    with open(a.md, "w") as f:
        f.write("\n".join(L) + "\n")
    subprocess.call([sys.executable, os.path.join(HERE, "..", "bench", "readme_block.py"), "robustness", a.md])


def write_png(res, a):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG (apt-get install python3-matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    xs = [0.0] + EPS
    for name in ORDER:
        d = res["defences"][name]
        w = d["attacks"]["worst case (white-box)"]
        ys = [d["clean_accuracy"]] + [w["%g" % e]["robust_accuracy"] for e in EPS]
        lo = [d["clean_ci95"][0]] + [w["%g" % e]["robust_accuracy_ci95"][0] for e in EPS]
        hi = [d["clean_ci95"][1]] + [w["%g" % e]["robust_accuracy_ci95"][1] for e in EPS]
        ax.errorbar(xs, [100 * v for v in ys], yerr=[[100 * (v - l) for v, l in zip(ys, lo)],
                                                     [100 * (h - v) for v, h in zip(ys, hi)]],
                    marker="o", capsize=3, label=name)
    ax.set_xlabel("L-inf eps (pixels in [0, 1])")
    ax.set_ylabel("accuracy, worst white-box attack (%)")
    ax.set_title("phiDNN on Fashion-MNIST: accuracy vs eps (clean n=%d, attacked n=%d)" % (
        res["parameters"]["n"], min(res["parameters"]["n"], res["parameters"]["n_adaptive_slow"])), fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.png, metadata={"Software": None})
    print("wrote " + a.png)


if __name__ == "__main__":
    main()
