#!/usr/bin/env bash
# tests/deploy/test_scale.sh - loopback scale-out: 3 saserve replicas behind
# Debian's nginx (least_conn, docker/nginx/saserve-proxy.conf: retry on error,
# timeout, 503), scraped by Debian's Prometheus (1 s interval, with
# docker/prometheus-rules.yml). Everything on 127.0.0.1, in a temp dir, killed
# by the trap; every wait is bounded and the whole run has a watchdog.
#
#   phase 1  60 requests through nginx, 6 at a time: they spread over the
#            replicas (each replica's own saserve_requests_total)
#   phase 2  Prometheus: all three targets up, the KV metrics and the
#            saserve:kv_utilization recording rule present, its counts match
#   phase 3  60 more requests; SIGTERM to replica 2 while it has sequences in
#            flight: every answer is a 200 that parses with a finish_reason,
#            or a clean error status; none truncated, none lost; replica 2
#            finishes its in-flight work, exits 0; Prometheus marks it down
#
# Needs: build/saserve, nginx, prometheus, curl, python3 (make deps-deploy).
# Environment: SHARED (../shared), BUILD (build), REQUESTS (60), CONCURRENCY (6), MAX_TOKENS (384),
# SCALE_TIMEOUT (240 s watchdog).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
SHARED=${SHARED:-../shared}
BUILD=${BUILD:-build}
MODEL=$SHARED/models/stories260K/stories260K.gguf
N=${REQUESTS:-60}
CONC=${CONCURRENCY:-6}
T0=$SECONDS
# saserve rejects unknown SASERVE_* variables: start the replicas from a clean slate
for v in $(compgen -e | grep '^SASERVE_'); do unset "$v"; done

pass=0; fail=0; failed=()
ok() { pass=$((pass + 1)); printf '  ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf '  FAIL  %s%s\n' "$1" "${2:+: $2}"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
phase() { printf '[%5.1fs] %s\n' "$(awk -v s=$SECONDS -v t=$T0 'BEGIN{print s-t}')" "$*"; }
finish() {
    echo
    [ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
    echo "test_scale: $((SECONDS - T0)) s in all; $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

# the system interpreter: a pyenv shim can take seconds per start on a busy machine
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
missing=""
for t in nginx prometheus curl; do command -v $t >/dev/null || missing="$missing $t"; done
[ -x "$BUILD/saserve" ] || missing="$missing $BUILD/saserve"
[ -f "$MODEL" ] || missing="$missing $MODEL"
[ -n "$PY" ] || missing="$missing python3"
[ -z "$missing" ] || { echo "test_scale: missing:$missing (make deps-deploy; make)"; exit 1; }

TMP=$(mktemp -d /tmp/saserve-scale.XXXXXX)
chmod 755 "$TMP"   # nginx workers run as nobody
PIDS=()
WATCHDOG=""
cleanup() {
    local p
    if [ -n "$WATCHDOG" ]; then   # the watchdog subshell and its sleep
        # shellcheck disable=SC2046  # pids, one word each
        kill $(ps -o pid= --ppid "$WATCHDOG") "$WATCHDOG" 2>/dev/null
    fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    if [ -n "${KEEP_TMP:-}" ]; then echo "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "test_scale: interrupted or timed out"; exit 124' INT TERM
(sleep "${SCALE_TIMEOUT:-240}"; kill -TERM $$) >/dev/null 2>&1 &
WATCHDOG=$!

read -r P1 P2 P3 PNG PPROM < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
RPORTS=("$P1" "$P2" "$P3")
LB=http://127.0.0.1:$PNG
PROM=http://127.0.0.1:$PPROM

wait_http() { # url seconds -> 0 when it answers 200
    local i
    for i in $(seq 1 $(($2 * 10))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
metric() { # port 'name{labels}' -> value (empty when unreachable)
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k {print $2}'
}
COMPLETIONS='saserve_requests_total{endpoint="completions",status="200"}'
promq() { # PromQL -> the JSON answer
    curl -s --max-time 3 --get "$PROM/api/v1/query" --data-urlencode "query=$1"
}

# ---- start: 3 replicas, nginx, Prometheus
phase "start prometheus :$PPROM, 3 replicas (127.0.0.1:${RPORTS[*]}), nginx :$PNG"
# Prometheus first: its discovery hands targets to the scrapers only after ~5 s
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["$ROOT/docker/prometheus-rules.yml"]
scrape_configs:
  - job_name: saserve
    static_configs:
      - targets: ["127.0.0.1:$P1", "127.0.0.1:$P2", "127.0.0.1:$P3"]
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
    --web.listen-address="127.0.0.1:$PPROM" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
SPIDS=()
for i in 0 1 2; do
    "$BUILD/saserve" serve -m "$MODEL" --host 127.0.0.1 --port "${RPORTS[$i]}" --threads 1 --slots 4 \
        --shutdown-grace 10 --per-ip-connections 256 >"$TMP/replica$((i + 1)).log" 2>&1 &
    SPIDS+=($!); PIDS+=($!)
done
for i in 0 1 2; do
    wait_http "http://127.0.0.1:${RPORTS[$i]}/health" 20 ||
        { bad "replica $((i + 1)) healthy"; tail -n 5 "$TMP/replica$((i + 1)).log"; finish; }
done
ok "3 replicas healthy"

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 256; }
http {
    log_format lb '\$status up=\$upstream_addr us=\$upstream_status rt=\$request_time';
    access_log $TMP/nginx/access.log lb;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream saserve {
        least_conn;
        server 127.0.0.1:$P1 max_fails=1 fail_timeout=5s;
        server 127.0.0.1:$P2 max_fails=1 fail_timeout=5s;
        server 127.0.0.1:$P3 max_fails=1 fail_timeout=5s;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$PNG;
        location / {
            include $ROOT/docker/nginx/saserve-proxy.conf;
        }
    }
}
EOF
nginx -t -q -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx-t.log" ||
    { bad "nginx -t"; cat "$TMP/nginx-t.log"; finish; }
nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)

wait_http "$LB/health" 10 && ok "nginx answers /health through the upstream" ||
    { bad "nginx up"; cat "$TMP/nginx/error.log"; finish; }
wait_http "$PROM/-/ready" 30 && ok "prometheus ready" || { bad "prometheus ready"; tail "$TMP/prometheus.log"; finish; }

targets_up() { # -> "up total"; the unhealthy ones to $TMP/targets.err
    "$PY" -c '
import json, sys
t = json.loads(sys.argv[1])["data"]["activeTargets"]
print(sum(1 for x in t if x["health"] == "up"), len(t))
for x in t:
    if x["health"] != "up": print("   ", x["scrapeUrl"], x["health"], x["lastError"], file=sys.stderr)' \
        "$(curl -s --max-time 3 "$PROM/api/v1/targets")" 2>"$TMP/targets.err"
}
t=$SECONDS
for _ in $(seq 1 40); do [ "$(targets_up)" = "3 3" ] && break; sleep 0.5; done
check "prometheus scrapes all 3 replicas before the load ($((SECONDS - t)) s)" test "$(targets_up)" = "3 3"

# ---- phase 1: spread
declare -A before
for i in 0 1 2; do before[$i]=$(metric "${RPORTS[$i]}" "$COMPLETIONS"); done
phase "phase 1: $N requests through nginx, $CONC at a time"
"$PY" tests/deploy/load.py "$LB" "$N" "$CONC" "$TMP/load1.json" | sed 's/^/  load: /'
declare -A p1
total1=0; min1=$N
for i in 0 1 2; do
    v=$(metric "${RPORTS[$i]}" "$COMPLETIONS")
    p1[$i]=$((v - ${before[$i]:-0})); total1=$((total1 + p1[$i]))
    [ "${p1[$i]}" -lt "$min1" ] && min1=${p1[$i]}
done
ok1=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["classes"].get("ok", 0))' "$TMP/load1.json")
check "phase 1: all $N answered 200 with a finish_reason ($ok1)" test "$ok1" = "$N"
check "phase 1: the replicas' own counters add up to $N ($total1)" test "$total1" = "$N"
check "phase 1: every replica served at least $((N / 6)) (min $min1: ${p1[0]}/${p1[1]}/${p1[2]})" \
    test "$min1" -ge $((N / 6))

# ---- phase 2: Prometheus
phase "phase 2: Prometheus"
sleep 2.5   # a couple of 1 s scrapes after the load
up=""
for _ in $(seq 1 20); do   # a scrape can time out (1 s) on a busy machine: wait for a clean round
    up=$(targets_up); [ "$up" = "3 3" ] && break; sleep 0.5
done
check "prometheus: targets up/total = $up" test "$up" = "3 3"
[ "$up" = "3 3" ] || cat "$TMP/targets.err"
count_series() { "$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1])["data"]["result"]))' "$(promq "$1")"; }
check "prometheus: saserve_kv_bytes_used has 6 series (3 replicas x k,v)" test "$(count_series saserve_kv_bytes_used)" = 6
check "prometheus: saserve_kv_bytes_capacity, _saved, queue_depth from all 3" bash -c \
    "[ $(count_series saserve_kv_bytes_capacity) = 3 ] && [ $(count_series saserve_kv_bytes_saved) = 6 ] &&
     [ $(count_series saserve_queue_depth) = 3 ]"
kvu=0
for _ in $(seq 1 20); do   # rule group interval is 5 s
    kvu=$(count_series 'saserve:kv_utilization'); [ "$kvu" = 3 ] && break; sleep 0.5
done
check "prometheus: recording rule saserve:kv_utilization has 3 series" test "$kvu" = 3
peak=$(promq 'max by (instance) (max_over_time(saserve_kv_bytes_used{kind="v"}[2m]) + on (instance) max_over_time(saserve_kv_bytes_used{kind="k"}[2m]))' | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(" ".join("%s=%d" % (x["metric"]["instance"].split(":")[1], float(x["value"][1])) for x in r))')
check "prometheus: KV bytes in use during the load, busiest scrape per replica (port=bytes): ${peak:-none}" \
    grep -qE '=[1-9]' <<<"$peak"
promsum=$(promq "sum($COMPLETIONS)" | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else -1)')
own=0; for i in 0 1 2; do own=$((own + $(metric "${RPORTS[$i]}" "$COMPLETIONS"))); done
check "prometheus: sum of completions 200 = replicas' own counters ($promsum = $own)" test "$promsum" = "$own"

# ---- phase 3: SIGTERM to replica 2 mid-load
VICTIM=${SPIDS[1]}
declare -A b3
for i in 0 1 2; do b3[$i]=$(grep -c '/v1/completions 200' "$TMP/replica$((i + 1)).log"); done
phase "phase 3: $N requests, $CONC at a time; SIGTERM to replica 2 (pid $VICTIM, :$P2) mid-load"
"$PY" tests/deploy/load.py "$LB" "$N" "$CONC" "$TMP/load3.json" --kill "$VICTIM" --kill-after $((N / 4)) \
    --victim-metrics "http://127.0.0.1:$P2/metrics" | sed 's/^/  load: /'
rc=124
for _ in $(seq 1 150); do   # shutdown_grace is 10 s
    if ! kill -0 "$VICTIM" 2>/dev/null; then wait "$VICTIM"; rc=$?; break; fi
    sleep 0.1
done
read -r okn clean trunc transport unclean act < <("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]; c = s["classes"]
print(c.get("ok", 0), c.get("clean_error", 0), c.get("truncated", 0), c.get("transport", 0),
      c.get("unclean_error", 0), s["killed"].get("active_sequences", -1))' "$TMP/load3.json")
check "phase 3: SIGTERM landed with $act sequence(s) active on replica 2" test "$act" -ge 1
check "phase 3: no truncated 200 ($trunc), no transport error ($transport), no unclean error ($unclean)" \
    test "$trunc$transport$unclean" = 000
check "phase 3: every request answered: $okn ok + $clean clean errors = $N" test $((okn + clean)) = "$N"
check "phase 3: replica 2 exited 0 after draining (rc $rc)" \
    bash -c "[ $rc = 0 ] && grep -q 'shutdown complete' '$TMP/replica2.log'"
drained=$(awk '/SIGTERM: draining/ {on = 1; next} on && /\/v1\/completions 200/ {n++} END {print n + 0}' "$TMP/replica2.log")
check "phase 3: replica 2 finished $drained in-flight request(s) after SIGTERM" test "$drained" -ge 1
retried=$(grep -c 'us=[0-9]*, ' "$TMP/nginx/access.log")
echo "  nginx retried $retried request(s) on another replica (upstream_status lists two)"
grep 'us=[0-9]*, ' "$TMP/nginx/access.log" | head -n 5 | sed 's/^/    nginx: /'
down=""
for _ in $(seq 1 50); do
    down=$(promq "up{instance=\"127.0.0.1:$P2\"}" | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
    [ "$down" = 0 ] && break; sleep 0.2
done
check "prometheus: up{replica 2} = 0 after it left ($down)" test "$down" = 0

# ---- results table
declare -A p3
for i in 0 1 2; do p3[$i]=$(( $(grep -c '/v1/completions 200' "$TMP/replica$((i + 1)).log") - ${b3[$i]} )); done
echo
printf '%-9s %-7s %-12s %-12s %-14s %s\n' replica port "phase 1" "phase 3" "after phase 3" "prometheus up"
for i in 0 1 2; do
    state=running; [ "$i" = 1 ] && state="exit $rc"
    u=$(promq "up{instance=\"127.0.0.1:${RPORTS[$i]}\"}" | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "?")')
    printf '%-9s %-7s %-12s %-12s %-14s %s\n' "r$((i + 1))" "${RPORTS[$i]}" "${p1[$i]} served" "${p3[$i]} served" "$state" "$u"
done
"$PY" - "$TMP/load1.json" "$TMP/load3.json" <<'EOF'
import json, sys
print()
print("%-8s %5s %5s %8s %8s %8s %s" % ("load", "n", "conc", "wall s", "p50 ms", "p95 ms", "answers"))
for name, p in zip(("phase 1", "phase 3"), sys.argv[1:]):
    s = json.load(open(p))["summary"]
    print("%-8s %5d %5d %8.2f %8.1f %8.1f %s %s" % (name, s["n"], s["concurrency"], s["wall_s"], s["p50_ms"],
          s["p95_ms"], s["classes"], ("SIGTERM after %d done at %.2f s" % (s["killed"]["at_completed"],
          s["killed"]["at_s"])) if s["killed"].get("at_s") is not None else ""))
EOF
finish
