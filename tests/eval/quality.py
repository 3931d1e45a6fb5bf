#!/usr/bin/env python3
"""make eval: quality of Shared Attention and the re-balancer on the real models.

For stories260K and TinyStories-656K (its Q8_0 GGUF and its Hugging Face
checkpoint, which tokenizes with tokenizer.json): the attention-similarity heatmap of every
layer pair, then perplexity over the TinyStories validation head with sharing
off, every single span of length 1 and 2, the auto plan (at the default
threshold 0.9 and at a threshold low enough to share something), and the
re-balancer at its defaults -- each next to its KV bytes per token.

Writes tests/eval/results/{quality.md, quality.json, sim-<model>.png} and
replaces the block between the quality markers in README.md.
Everything comes from build/saserve; nothing here is typed by hand.
"""
import json
import os
import subprocess
import sys

BUILD = os.environ.get("BUILD", "build")
SHARED = os.environ.get("SHARED", "../shared")
MAX_TOKENS = os.environ.get("EVAL_TOKENS", "65536")
CTX = "256"
TEXT = f"{SHARED}/eval/tinystories/tinystories_valid_head.txt"
OUT = "tests/eval/results"
MODELS = [  # (name, path, file slug)
    ("stories260K", f"{SHARED}/models/stories260K/stories260K.gguf", "stories260k"),
    ("TinyStories-656K (Q8_0)", f"{SHARED}/models/tinystories-656K/TinyStories-656K-Q8_0.gguf", "tinystories-656k"),
    # the HF checkpoint (F32 safetensors, tokenizer.json with merges): the model's own tokenization
    ("TinyStories-656K (HF F32)", f"{SHARED}/models/tinystories-656K/hf", "tinystories-656k-hf"),
]


def run(*args):
    return subprocess.run([f"{BUILD}/saserve", *args], check=True, capture_output=True, text=True).stdout


def perplexity(model, *extra):
    out = run("perplexity", "-m", model, "-f", TEXT, "-c", CTX, "-n", MAX_TOKENS, "--json", *extra)
    return json.loads(out.strip().splitlines()[-1])


def main():
    os.makedirs(OUT, exist_ok=True)
    md = []
    results = []
    for name, path, slug in MODELS:
        png = f"{OUT}/sim-{slug}.png"
        js = f"{OUT}/sim-{slug}.json"
        run("similarity", "-m", path, "-f", TEXT, "-c", "512", "--json", js, "--png", png)
        sim = json.load(open(js))
        L = sim["layers"]
        m = sim["matrix"]
        # the lowest threshold that still shares: the best adjacent-layer similarity
        best = max(m[i][i + 1] for i in range(L - 1))
        low = round(best - 0.005, 3)
        plans = [("off", [])]
        plans += [(f"{a}", ["--share", f"{a}"]) for a in range(1, L)]
        plans += [(f"{a}-{a + 1}", ["--share", f"{a}-{a + 1}"]) for a in range(1, L - 1)]
        plans += [("auto (0.90)", ["--share", "auto", "--share-threshold", "0.9"])]
        plans += [(f"auto ({low:.3f})", ["--share", "auto", "--share-threshold", str(low)])]
        plans += [("off + re-balancer", ["--rebalance"])]
        rows = []
        for label, extra in plans:
            r = perplexity(path, *extra)
            r["plan"] = label
            rows.append(r)
            results.append({"model": name, **r})
            print(f"{name:28s} {label:18s} ppl {r['perplexity']:8.4f}", file=sys.stderr)
        base = rows[0]
        md.append(f"#### {name}: {L} layers, {base['tokens_scored']} tokens scored, windows of {CTX}\n")
        md.append(f"![attention similarity of {name}]({png})\n")
        md.append("| plan | spans used | perplexity | vs off | bits/byte | KV bytes/token | KV saved |")
        md.append("|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            saved = 1 - r["kv_bytes_per_token"] / r["kv_bytes_per_token_without_sharing"]
            md.append(
                f"| {r['plan']} | {r['spans']} | {r['perplexity']:.3f} | {r['perplexity'] / base['perplexity'] - 1:+.1%} "
                f"| {r['bits_per_byte']:.4f} | {r['kv_bytes_per_token']} | {saved:.0%} |"
            )
        md.append("")
        md.append(
            "Similarity matrix (mean cosine of attention rows): "
            + "; ".join(f"{i}-{i + 1}: {m[i][i + 1]:.3f}" for i in range(L - 1))
            + "\n"
        )
    text = "\n".join(md)
    open(f"{OUT}/quality.md", "w").write(text)
    json.dump(results, open(f"{OUT}/quality.json", "w"), indent=1)
    readme = open("README.md").read()
    b, e = "<!-- quality:begin -->", "<!-- quality:end -->"
    if b in readme and e in readme:
        head, rest = readme.split(b, 1)
        _, tail = rest.split(e, 1)
        open("README.md", "w").write(f"{head}{b}\n{text}\n{e}{tail}")
    print(text)


if __name__ == "__main__":
    main()
