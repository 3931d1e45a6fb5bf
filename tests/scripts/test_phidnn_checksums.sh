#!/usr/bin/env bash
# test_phidnn_checksums.sh - the committed phiDNN model, its training record and the C test
# goldens are exactly what tests/tools/phidnn/export.py wrote (config/models/SHA256SUMS, written
# by the same export), each model file is at most 2 MB, and check-model accepts the model.
set -u
BUILD=${BUILD:-build}
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
if out=$(sha256sum -c config/models/SHA256SUMS 2>&1); then ok "sha256: $(echo "$out" | paste -sd' ')"; else bad "sha256: $out"; fi
for f in config/models/*.gguf; do
    n=$(stat -c %s "$f")
    if [ "$n" -le $((2 * 1024 * 1024)) ]; then ok "$f is $n bytes (<= 2 MB)"; else bad "$f is $n bytes (> 2 MB)"; fi
    if [ -x "$BUILD/saserve" ]; then
        if line=$("$BUILD/saserve" check-model "$f" 2>&1); then ok "$line"; else bad "check-model $f: $line"; fi
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
