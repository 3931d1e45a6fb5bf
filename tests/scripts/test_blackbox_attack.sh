#!/usr/bin/env bash
# test_blackbox_attack.sh - the black-box score-based attack of issue 14 (2e) in its short
# mode against a saserve started here on 127.0.0.1 (tests/robust/blackbox.py, standard-library
# Python): 20 test images, <= 300 queries each, eps 0.2, recreate=off and recreate=sr. Checks:
# every request answered 200, no 5xx, /metrics counted every request and every image exactly
# once, and for recreate=off the attack finds adversarial examples (it works at all; its
# strength is what make robustness reports).
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
export SASERVE=${SASERVE:-$BUILD/saserve}
export MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.gguf}
fail_now() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }
[ -x "$SASERVE" ] || fail_now "$SASERVE is not built"
[ -f "$MODEL" ] || fail_now "model $MODEL not found (SHARED=$SHARED)"
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
    fail_now "Fashion-MNIST not installed (make deps installs dataset-fashion-mnist)"
PY=python3; command -v "$PY" >/dev/null 2>&1 || PY=/usr/bin/python3
LOG=$(mktemp "${TMPDIR:-/tmp}/saserve-blackbox.XXXXXX")
"$PY" tests/robust/blackbox.py --n 20 --queries 300 --modes off,sr --eps 0.2 --concurrency 4 --seed 1 \
    --check --log "$LOG"
rc=$?
[ "$rc" -eq 0 ] || { echo "server log:"; tail -n 20 "$LOG"; }
rm -f "$LOG"
exit "$rc"
