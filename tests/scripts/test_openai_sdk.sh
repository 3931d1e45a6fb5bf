#!/usr/bin/env bash
# test_openai_sdk.sh - saserve through the official OpenAI Node SDK (openai v4,
# pinned in tests/http/package.json / package-lock.json): completions (plain, streamed,
# echo + logprobs scoring the prompt, max_tokens 0),
# chat completions (plain, streamed), models.list, errors as SDK exceptions,
# the extra `cache` field, ?share= through the SDK's query option.
#
# Installs the SDK with `npm ci` when tests/http/node_modules/openai is missing, starts
# build/saserve with --api-key x on a free loopback port, runs
# tests/http/openai_sdk.mjs and kills the server in a trap.
#
# Environment: BUILD (default build), SHARED (default ../shared), SASERVE
# (default $BUILD/saserve), MODEL (default stories260K).
# Output: one PASS/FAIL line per check, then "N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
MODEL=${MODEL:-$SHARED/models/stories260K/stories260K.gguf}
KEY=x

pass=0
fail=0
SERVER_PID=""
LOG=$(mktemp "${TMPDIR:-/tmp}/saserve-sdk.XXXXXX")
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    wait 2>/dev/null
    rm -f "$LOG"
}
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        bad "$tool is not installed (Debian packages nodejs and npm)"
        finish
    fi
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    bad "node $(node --version) is too old for the openai v4 SDK (needs 18 or later)"
    finish
fi
if [ ! -f tests/http/node_modules/openai/package.json ]; then
    if timeout 300 npm ci --prefix tests/http --no-audit --no-fund >"$LOG" 2>&1; then
        ok "npm ci installed the pinned SDK"
    else
        bad "npm ci failed:"
        sed 's/^/    /' "$LOG" | tail -n 15
        finish
    fi
fi
want=$(node -p 'require("./tests/http/package-lock.json").packages["node_modules/openai"].version')
have=$(node -p 'require("./tests/http/node_modules/openai/package.json").version')
if [ "$want" = "$have" ]; then ok "openai SDK $have installed (as locked)"; else bad "openai SDK $have installed, $want locked (run npm ci)"; fi

if [ ! -x "$SASERVE" ] || [ ! -f "$MODEL" ]; then
    bad "need $SASERVE and $MODEL"
    finish
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$SASERVE" serve -m "$MODEL" --host 127.0.0.1 --port "$PORT" --ctx 1024 --api-key "$KEY" >"$LOG" 2>&1 &
SERVER_PID=$!
ready=0
for _ in $(seq 400); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PORT/health")" = 200 ]; then ready=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    bad "server did not become ready:"
    sed 's/^/    /' "$LOG" | tail -n 5
    finish
fi
ok "server ready on port $PORT"

out=$(timeout 120 node tests/http/openai_sdk.mjs "$PORT" "$KEY" 2>&1)
rc=$?
while IFS= read -r line; do
    case $line in
    PASS*) ok "${line#PASS }" ;;
    FAIL*) bad "${line#FAIL }" ;;
    *" passed, "*" failed") ;; # the script's own summary: counted above
    *) [ -n "$line" ] && echo "    $line" ;;
    esac
done <<<"$out"
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then bad "node exited with status $rc"; fi

kill -TERM "$SERVER_PID"
for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
wait "$SERVER_PID"
rc=$?
SERVER_PID=""
if [ "$rc" -eq 0 ]; then ok "server exited 0 on SIGTERM"; else bad "server exit status $rc on SIGTERM"; fi
finish
