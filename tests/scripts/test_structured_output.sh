#!/usr/bin/env bash
# test_structured_output.sh - structured output (issue 17.5) checked by a real
# JSON-schema validator: build/tools/structured_gen generates RUNS outputs per
# schema of tests/fixtures/schemas/ with stories260K through the engine (the
# converter of server/schema.c, the engine's grammar mask), and
# tests/http/validate_structured.mjs validates each completed one with ajv
# (pinned in tests/http/package.json; installed with `npm ci` when missing).
# Environment: BUILD (default build), SHARED (default ../shared), RUNS (default 8).
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
RUNS=${RUNS:-8}
MODEL=$SHARED/models/stories260K/stories260K.gguf
for tool in node npm; do
    command -v $tool >/dev/null || { echo "FAIL $tool is not installed"; exit 1; }
done
[ -d tests/http/node_modules/ajv ] || npm ci --prefix tests/http --no-audit --no-fund >/dev/null 2>&1 || { echo "FAIL npm ci"; exit 1; }
[ -x "$BUILD/tools/structured_gen" ] || { echo "FAIL $BUILD/tools/structured_gen is not built"; exit 1; }
out=$(mktemp "${TMPDIR:-/tmp}/structured.XXXXXX")
trap 'rm -f "$out"' EXIT
"$BUILD/tools/structured_gen" "$MODEL" "$RUNS" - tests/fixtures/schemas/*.json >"$out" || { echo "FAIL structured_gen"; exit 1; }
node tests/http/validate_structured.mjs <"$out"
