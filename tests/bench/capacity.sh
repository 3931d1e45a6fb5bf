#!/usr/bin/env bash
# make bench-capacity: how many sequences a fixed KV budget runs at once, with
# Shared Attention off and on, read from the server's own /metrics.
#
# The budget holds exactly 4 share-off sequences of the test length (a prompt
# of PROMPT tokens + MAX_TOKENS generated = 128 positions = 8 pages of 16 per
# layer and kind); it also equals one full context (--ctx 512), the least the
# server accepts. A plan sharing S of L layers needs 2L-S pages per block
# instead of 2L (ratio saved r = S/2L), so floor(4/(1-r)) of its sequences
# should fit. 16 clients each send one request; saserve_active_sequences_peak
# is the figure. Writes build/bench-results/capacity-110m.{json,md}.
set -euo pipefail
BUILD=${BUILD:-build}; SHARED=${SHARED:-../shared}
source tests/bench/gen_model.sh
model=$(gen_model 110M F32)
mkdir -p "$BUILD/bench-results"
PROMPT=33 MAX_TOKENS=96 BLOCK=16 CTX=512 CLIENTS=16
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {print $2; exit}'; }
pid=
stop() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }; }
trap stop EXIT
start() { # start PORT BUDGET
    "$BUILD/saserve" serve -m "$model" --port "$1" --slots "$CLIENTS" --queue-max 64 --ctx "$CTX" \
        --kv-block "$BLOCK" --kv-budget "$2" --no-prefix-cache --share-spans off --log-level warn &
    pid=$!
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    echo "capacity: server did not start" >&2; exit 1
}
# the page size, from a server with the default budget
port=$(free_port); start "$port" 0
page=$(metric "$port" saserve_kv_page_bytes)
layers=$(curl -sf "http://127.0.0.1:$port/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["layers"])')
stop
positions=$((PROMPT + MAX_TOKENS - 1)); blocks=$(((positions + BLOCK - 1) / BLOCK))
budget=$((4 * blocks * 2 * layers * page))
out="$BUILD/bench-results/capacity-110m"
{ echo "KV budget $budget bytes = $((budget / page)) pages of $page bytes: 4 share-off sequences of $PROMPT + $MAX_TOKENS tokens ($CLIENTS clients, 110M F32, --ctx $CTX)."
  echo
  echo "| plan | sharing layers | saved ratio r | pages per sequence | expected floor(4/(1-r)) | ran at once (saserve_active_sequences_peak) | generated tok/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|"; } > "$out.md"
echo "[" > "$out.json"; first=1
for plan in off 6-11 1-11; do
    if [ "$plan" = off ]; then S=0; extra='{}'; q='?share=off'; else
        S=$(python3 -c "a,b=map(int,'$plan'.split('-'));print(b-a+1)"); extra="{\"share_spans\": \"$plan\"}"; q='?share=on'; fi
    port=$(free_port); start "$port" "$budget"
    r=$(python3 tests/bench/loadgen.py --port "$port" --clients "$CLIENTS" --requests 1 --max-tokens "$MAX_TOKENS" \
        --prompt-ids "$PROMPT" --extra "$extra" --query "$q" --json)
    peak=$(metric "$port" saserve_active_sequences_peak)
    total=$(metric "$port" 'saserve_kv_pages{state="total"}')
    stop
    python3 - "$r" "$plan" "$S" "$layers" "$blocks" "$peak" "$total" >> "$out.md" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); plan, S, L, blocks, peak, total = sys.argv[2], *map(int, sys.argv[3:8])
ratio = S / (2 * L); per = blocks * (2 * L - S); expect = int(4 / (1 - ratio) + 1e-9)
ok = "" if r["ok"] == r["requests"] else f" ({r['ok']}/{r['requests']} ok)"
print(f"| {plan} | {S} | {ratio:.3f} | {per} | {expect} (pool fits {total // per}) | {peak} | {r['tokens_per_second']:.1f}{ok} |")
PY
    [ $first = 1 ] || echo "," >> "$out.json"; first=0
    echo "{\"plan\": \"$plan\", \"sharing_layers\": $S, \"peak_active\": $peak, \"pages_total\": $total, \"loadgen\": $r}" >> "$out.json"
    tail -n 1 "$out.md"
done
echo "]" >> "$out.json"
echo "bench-capacity: wrote $out.md"
python3 tests/bench/readme_block.py bench-capacity "$out.md"
