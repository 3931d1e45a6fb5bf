#!/usr/bin/env bash
# make bench-context: decode step time at context 256 / 1024 / 2048 on the
# generated 110M F32 shape, sharing off and with SHARE (default 6-11).
# Writes build/bench-results/context-110m.md and refreshes the README table.
set -euo pipefail
BUILD=${BUILD:-build}; SHARED=${SHARED:-../shared}
model=models/gen/llama-110m-f32.gguf
mkdir -p models/gen "$BUILD/bench-results"
[ -s "$model" ] || "$BUILD/tools/gguf_random" -o "$model" --shape 110M --type F32 \
    --vocab-from "$SHARED/tokenizer-vectors/ggml-vocab-llama-spm.gguf" >&2
out="$BUILD/bench-results/context-110m.md"
{ echo "**make bench-context** (110M F32, 2 threads, median of 3 x 32 decode steps per point)"; echo
  "$BUILD/bench_step" -m "$model" -t 2 --ctx 256,1024,2048 --share "${SHARE:-6-11}"; } | tee "$out"
python3 - "$out" <<'PY'
import sys
b, e = "<!-- bench-context:begin -->", "<!-- bench-context:end -->"
readme = open("README.md").read()
if b in readme and e in readme:
    head, rest = readme.split(b, 1)
    _, tail = rest.split(e, 1)
    open("README.md", "w").write(f"{head}{b}\n{open(sys.argv[1]).read()}\n{e}{tail}")
PY
