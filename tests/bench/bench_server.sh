#!/usr/bin/env bash
# make bench-server: aggregate decode throughput of the server under N = 1, 2, 4,
# 8, 16 concurrent streaming clients on the generated 110M shape (F32 unless
# TYPE=...), on 127.0.0.1. Writes build/bench-results/server-<model>.{json,md}.
set -euo pipefail
BUILD=${BUILD:-build}; SHARED=${SHARED:-../shared}
type=${TYPE:-f32}
source tests/bench/gen_model.sh
model=$(gen_model 110M "$type")
mkdir -p "$BUILD/bench-results"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$BUILD/saserve" serve -m "$model" --port "$port" --slots 16 --queue-max 64 --ctx 256 --no-mmap \
    --share-spans off --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
out="$BUILD/bench-results/server-110m-$type"
echo "[" > "$out.json"
{ echo "| clients | requests | generated tok/s | vs 1 client | TTFT p50 (s) | TTFT p99 (s) | latency p50 (s) | latency p99 (s) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"; } > "$out.md"
base=""
first=1
for n in 1 2 4 8 16; do
  r=$(python3 tests/bench/loadgen.py --port "$port" --clients "$n" --requests 2 --max-tokens 64 --stream --json)
  [ $first = 1 ] || echo "," >> "$out.json"; first=0
  echo "$r" >> "$out.json"
  python3 - "$r" "$base" >> "$out.md" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); base = float(sys.argv[2]) if sys.argv[2] else r["tokens_per_second"]
f = lambda v: "-" if v is None else f"{v:.3f}"
print(f"| {r['clients']} | {r['requests']} | {r['tokens_per_second']:.1f} | {r['tokens_per_second'] / base:.2f}x | "
      f"{f(r['ttft_p50'])} | {f(r['ttft_p99'])} | {f(r['latency_p50'])} | {f(r['latency_p99'])} |")
PY
  [ -n "$base" ] || base=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens_per_second'])" "$r")
  tail -n 1 "$out.md"
done
echo "]" >> "$out.json"
echo "bench-server: wrote $out.md and $out.json"
# refresh the README's copy, if it has a block for it
python3 tests/bench/readme_block.py bench-server "$out.md"
