#!/usr/bin/env bash
# test_phidnn_parity.sh - the PyTorch mirror of the served phiDNN (weights read from
# config/models/phidnn-fmnist.gguf by tests/robust/phidnn_mirror.py) against the C engine
# over HTTP: 256 test images, every mode, fixed seeds, max |delta probability| <= 1e-4
# (tests/robust/parity.py). Where torch is not installed it prints a SKIP line with the
# reason and passes ("0 passed, 0 failed, 1 skipped").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
export SASERVE=${SASERVE:-$BUILD/saserve}
export MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.gguf}
skip() { echo "SKIP phidnn parity: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
fail_now() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || skip "no /usr/bin/python3"
"$PY" -c 'import torch, numpy' 2>/dev/null || skip "torch or numpy not importable by $PY (apt-get install python3-torch python3-numpy)"
[ -x "$SASERVE" ] || fail_now "$SASERVE is not built"
[ -f "$MODEL" ] || fail_now "model $MODEL not found (SHARED=$SHARED)"
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
    fail_now "Fashion-MNIST not installed (make deps installs dataset-fashion-mnist)"
LOG=$(mktemp "${TMPDIR:-/tmp}/saserve-parity.XXXXXX")
"$PY" tests/robust/parity.py --n 256 --log "$LOG"
rc=$?
[ "$rc" -eq 0 ] || tail -n 20 "$LOG"
rm -f "$LOG"
exit "$rc"
