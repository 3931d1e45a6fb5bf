#!/usr/bin/env bash
# test_hf_cli.sh - the Hugging Face checkpoint end to end through the real
# binary: check-model accepts the directory, `generate --temp 0` from it gives
# the same text as from an F32 GGUF of the same weights (tests/gguf/hf_to_gguf.py;
# the prompt "Once" tokenizes the same with both vocabularies), and `serve -m DIR`
# answers /v1/completions (plain and streamed) and /v1/models.
# Environment: BUILD (default build), SHARED (default ../shared), SASERVE.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
HF=$SHARED/models/tinystories-656K/hf
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

if "$SASERVE" check-model "$HF" >"$tmp/check" 2>&1; then ok "check-model $(cat "$tmp/check")"; else bad "check-model: $(cat "$tmp/check")"; fi
python3 tests/gguf/hf_to_gguf.py "$HF" "$tmp/f32.gguf" --vocab-from "$SHARED/models/tinystories-656K/TinyStories-656K-Q8_0.gguf"
"$SASERVE" generate -m "$HF" -p "Once" -n 8 --temp 0 >"$tmp/hf.txt" 2>"$tmp/hf.err"
rc_hf=$?
"$SASERVE" generate -m "$tmp/f32.gguf" -p "Once" -n 8 --temp 0 >"$tmp/gguf.txt" 2>/dev/null
if [ $rc_hf -eq 0 ] && [ -s "$tmp/hf.txt" ] && cmp -s "$tmp/hf.txt" "$tmp/gguf.txt"; then
    ok "generate -m HF_DIR -p Once -n 8 --temp 0: '$(cat "$tmp/hf.txt")' (= F32 GGUF of the same weights)"
else
    bad "generate: rc $rc_hf, HF '$(cat "$tmp/hf.txt")' vs GGUF '$(cat "$tmp/gguf.txt")'; $(tail -n 2 "$tmp/hf.err")"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SASERVE" serve -m "$HF" --port "$port" >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ "$(curl -s -m 1 -o /dev/null -w "%{http_code}" "http://127.0.0.1:$port/health" 2>/dev/null)" = 200 ] && break; sleep 0.1; done # 503 while loading
body='{"prompt":"Once upon a time","max_tokens":16,"temperature":0}'
resp=$(curl -s -m 20 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d "$body")
if echo "$resp" | python3 -c 'import json,sys; r=json.load(sys.stdin); c=r["choices"][0]; assert c["text"] and c["finish_reason"]=="length" and r["usage"]["completion_tokens"]==16; print(repr(c["text"]))' >"$tmp/text" 2>&1; then
    ok "serve -m HF_DIR: /v1/completions -> $(cat "$tmp/text")"
else
    bad "serve /v1/completions: $resp"
fi
stream=$(curl -s -m 20 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0,"stream":true}')
joined=$(echo "$stream" | python3 -c '
import json, sys
out = ""
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: ") and line != "data: [DONE]":
        out += json.loads(line[6:])["choices"][0]["text"]
print(repr(out))')
if [ "$joined" = "$(cat "$tmp/text")" ] && echo "$stream" | grep -q '^data: \[DONE\]'; then ok "streamed text equals the plain completion"; else bad "stream: $joined vs $(cat "$tmp/text")"; fi
models=$(curl -s -m 5 "http://127.0.0.1:$port/v1/models")
if echo "$models" | grep -q '"n_params":656000'; then ok "/v1/models lists the checkpoint"; else bad "/v1/models: $models"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
