#!/usr/bin/env bash
# test_vision_http.sh - black-box tests of the phiDNN Open Inference Protocol endpoints
# (openapi.yaml /v2/...) on a real saserve serving stories260K and the committed
# config/models/phidnn-fmnist.gguf side by side on 127.0.0.1: the validation table
# (each case its named 4xx), 405/413/503 + Retry-After, same seed -> byte-identical
# answer, accuracy over HTTP on the first 1000 Fashion-MNIST test images per mode
# (>= recorded - 2 points), metrics; every recorded answer validated against openapi.yaml.
# The checks themselves are tests/http/vision_check.py (stdlib Python).
#
# Environment: BUILD, SHARED, SASERVE, MODEL (as test_http.sh), VISION_MODEL, SPEC.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.gguf}
VISION_MODEL=${VISION_MODEL:-config/models/phidnn-fmnist.gguf}
SPEC=${SPEC:-openapi.yaml}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/saserve-vision.XXXXXX")
PID=""
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
    wait 2>/dev/null
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "scratch kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
fail_now() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }
[ -x "$SASERVE" ] || fail_now "$SASERVE is not built"
[ -f "$MODEL" ] || fail_now "model $MODEL not found (SHARED=$SHARED)"
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
    fail_now "Fashion-MNIST not installed (make deps installs dataset-fashion-mnist)"
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || fail_now "no python3 with PyYAML (make deps)"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$SASERVE" serve -m "$MODEL" --vision-model "$VISION_MODEL" --host 127.0.0.1 --port "$port" --threads 2 \
    --ctx 256 --vision-max-batch 64 --vision-queue-max 2 --max-body 1m >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 400); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/v2/health/ready" 2>/dev/null)" = 200 ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
t0=$SECONDS
"$PY" tests/http/vision_check.py "$port" "$TMP" "$TMP/manifest" >"$TMP/checks.out" 2>&1
rc=$?
pass=$(grep -c '^PASS' "$TMP/checks.out")
fail=$(grep -c '^FAIL' "$TMP/checks.out")
grep -E '^(PASS|FAIL)' "$TMP/checks.out"
[ "$rc" -eq 0 ] || [ "$fail" -gt 0 ] || { fail=$((fail + 1)); echo "FAIL vision_check.py exited $rc:"; tail -n 20 "$TMP/checks.out"; }
if [ -s "$TMP/manifest" ]; then
    "$PY" tests/http/validate.py "$SPEC" --manifest "$TMP/manifest" >"$TMP/schema.out" 2>&1
    p=$(grep -c '^PASS' "$TMP/schema.out"); f=$(grep -c '^FAIL' "$TMP/schema.out")
    grep '^FAIL' "$TMP/schema.out"
    echo "schema: $p answers valid against $SPEC, $f not"
    pass=$((pass + p)); fail=$((fail + f))
fi
if ! kill -0 "$PID" 2>/dev/null; then
    fail=$((fail + 1)); echo "FAIL the server died:"; tail -n 20 "$TMP/server.log"
else # SIGTERM: a clean exit 0 (and, for a sanitizer build, the leak check at exit)
    kill -TERM "$PID"
    for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then
        fail=$((fail + 1)); echo "FAIL the server did not exit within 15 s of SIGTERM"
    else
        wait "$PID"; st=$?; PID=""
        if [ "$st" -eq 0 ]; then pass=$((pass + 1)); echo "PASS SIGTERM -> exit 0"; else
            fail=$((fail + 1)); echo "FAIL SIGTERM -> exit $st"; tail -n 20 "$TMP/server.log"; fi
    fi
fi
if [ "${SAN_CHECK:-0}" = 1 ] && grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$TMP/server.log"; then
    fail=$((fail + 1)); echo "FAIL sanitizer report in the server log"; grep -m 5 -E 'Sanitizer|runtime error' "$TMP/server.log"
fi
echo "checks took $((SECONDS - t0)) s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
