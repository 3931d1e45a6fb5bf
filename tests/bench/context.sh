#!/usr/bin/env bash
# make bench-context: decode step time at context 256 / 1024 / 2048 on the
# generated 110M F32 shape, sharing off and with SHARE (default 6-11).
# Writes build/bench-results/context-110m.md and refreshes the README table.
set -euo pipefail
BUILD=${BUILD:-build}; SHARED=${SHARED:-../shared}
source tests/bench/gen_model.sh
model=$(gen_model 110M F32)
mkdir -p "$BUILD/bench-results"
out="$BUILD/bench-results/context-110m.md"
{ echo "**make bench-context** (110M F32, 2 threads, median of 3 x 32 decode steps per point)"; echo
  "$BUILD/bench_step" -m "$model" -t 2 --ctx 256,1024,2048 --share "${SHARE:-6-11}"; } | tee "$out"
python3 tests/bench/readme_block.py bench-context "$out"
