#!/usr/bin/env bash
# test_browser.sh - the web page at / in a real browser: headless Debian chromium
# (make deps: package chromium) driven by playwright-core (pinned in tests/http/package.json /
# package-lock.json, installed by `npm ci` when missing; Playwright's own browsers are
# never downloaded) against a real saserve serving stories260K and the committed phiDNN
# model on 127.0.0.1. The checks are tests/http/browser.mjs (see its header).
#
# Writes the screenshot of the page to $BUILD/test-logs/page.png on every run; with
# UPDATE_SCREENSHOT=1 (make screenshot) it also copies it to tests/http/results/page.png,
# the one the README shows.
#
# Environment: BUILD, SHARED, SASERVE, MODEL, VISION_MODEL (as test_vision_http.sh), CHROMIUM.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.gguf}
VISION_MODEL=${VISION_MODEL:-config/models/phidnn-fmnist.gguf}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SHOT=$BUILD/test-logs/page.png
TMP=$(mktemp -d "${TMPDIR:-/tmp}/saserve-browser.XXXXXX")
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
[ -x "$CHROMIUM" ] || fail_now "no browser at $CHROMIUM (make deps installs the Debian package chromium)"
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
    fail_now "Fashion-MNIST not installed (make deps installs dataset-fashion-mnist)"
command -v node >/dev/null 2>&1 || fail_now "node is not installed (Debian packages nodejs and npm)"
if [ ! -f tests/http/node_modules/playwright-core/package.json ]; then
    timeout 300 npm ci --prefix tests/http --no-audit --no-fund >"$TMP/npm.log" 2>&1 || { tail -n 20 "$TMP/npm.log"; fail_now "npm ci failed"; }
fi
want=$(node -p 'require("./tests/http/package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'require("./tests/http/node_modules/playwright-core/package.json").version')
[ "$want" = "$have" ] || fail_now "playwright-core $have installed, $want locked (run npm ci)"
mkdir -p "$(dirname "$SHOT")"
rm -f "$SHOT"
t0=$SECONDS
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$SASERVE" serve -m "$MODEL" --vision-model "$VISION_MODEL" --host 127.0.0.1 --port "$port" --threads 2 \
    --ctx 256 >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null)" = 200 ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$PID" 2>/dev/null || { tail -n 20 "$TMP/server.log"; fail_now "saserve did not start"; }
timeout 120 node tests/http/browser.mjs "$port" "$SHOT" >"$TMP/browser.out" 2>&1
rc=$?
pass=$(grep -c '^PASS' "$TMP/browser.out")
fail=$(grep -c '^FAIL' "$TMP/browser.out")
grep -E '^(PASS|FAIL)' "$TMP/browser.out"
[ "$rc" -eq 0 ] || [ "$fail" -gt 0 ] || { fail=$((fail + 1)); echo "FAIL browser.mjs exited $rc:"; tail -n 20 "$TMP/browser.out"; }
if [ -s "$SHOT" ]; then
    pass=$((pass + 1)); echo "PASS screenshot saved: $SHOT ($(wc -c <"$SHOT") bytes)"
    if [ "${UPDATE_SCREENSHOT:-0}" = 1 ]; then
        mkdir -p tests/http/results && cp "$SHOT" tests/http/results/page.png && echo "copied to tests/http/results/page.png"
    fi
else
    fail=$((fail + 1)); echo "FAIL no screenshot at $SHOT"
fi
if ! kill -0 "$PID" 2>/dev/null; then
    fail=$((fail + 1)); echo "FAIL the server died:"; tail -n 20 "$TMP/server.log"
else
    kill -TERM "$PID"
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then fail=$((fail + 1)); echo "FAIL the server did not exit within 10 s of SIGTERM"
    else wait "$PID"; st=$?; PID=""; [ "$st" -eq 0 ] || { fail=$((fail + 1)); echo "FAIL SIGTERM -> exit $st"; }; fi
fi
echo "browser test took $((SECONDS - t0)) s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
