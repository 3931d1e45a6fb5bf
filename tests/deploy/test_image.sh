#!/usr/bin/env bash
# tests/deploy/test_image.sh - build the Dockerfile here, unmodified, and run the image.
#
# No container registry is reachable here, so the base image is made locally:
#   1. debootstrap --variant=minbase bookworm (from the Debian mirror apt uses),
#      imported with podman as debian:bookworm-slim (reused on later runs;
#      REBUILD_BASE=1 makes it again)
#   2. buildah bud --isolation chroot --pull=never --format docker  (docker
#      format: OCI images cannot carry HEALTHCHECK)
#   3. the image's configuration: non-root user, port, stop signal, healthcheck,
#      SASERVE_MODEL / SASERVE_HOST, /models volume; no compiler in it; ldd clean
#   4. the server started inside with buildah from + buildah run --isolation
#      chroot (podman run cannot set its rlimits in this sandbox), with the
#      model directory mounted at /models; from outside with curl: /health,
#      a completion, /metrics; the HEALTHCHECK command run inside the container
#   5. SIGTERM to the container's main process (what `docker stop` sends,
#      STOPSIGNAL): an in-flight completion still answers 200, the process
#      exits 0 within shutdown_grace
#
# chroot isolation shares the host's network, so the server listens on a free
# 127.0.0.1 port (SASERVE_HOST/SASERVE_PORT overridden for this run only).
# Needs root and: debootstrap buildah podman curl python3 (make deps-deploy).
# Slow (a few minutes the first time); not part of make test.
# Environment: SHARED (../shared), IMAGE (localhost/saserve:test),
# DEPLOY_CACHE (build/deploy), REBUILD_BASE=1, MAKE_JOBS (2), KEEP_IMAGE=1.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
SHARED=${SHARED:-../shared}
SHARED=$(cd "$SHARED" 2>/dev/null && pwd) || { echo "test_image: no shared directory ${SHARED}"; exit 1; }
MODEL_DIR=$SHARED/models/stories260K
MODEL_FILE=stories260K.gguf
IMAGE=${IMAGE:-localhost/saserve:test}
BASE=debian:bookworm-slim
CACHE=${DEPLOY_CACHE:-build/deploy}
MAKE_JOBS=${MAKE_JOBS:-2}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
T0=$SECONDS
pass=0; fail=0; failed=()
ok() { pass=$((pass + 1)); printf '  ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf '  FAIL  %s%s\n' "$1" "${2:+: $2}"; }
check() { # name, command...
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
phase() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
finish() {
    echo
    [ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
    echo "test_image: $((SECONDS - T0)) s in all; $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

[ "$(id -u)" = 0 ] || { echo "test_image: needs root (buildah/podman storage, debootstrap)"; exit 1; }
# the system interpreter: a pyenv shim can take seconds per start on a busy machine
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
missing=""
for t in buildah podman curl; do command -v $t >/dev/null || missing="$missing $t"; done
[ -n "$PY" ] || missing="$missing python3"
[ -z "$missing" ] || { echo "test_image: missing:$missing (make deps-deploy)"; exit 1; }
[ -f "$MODEL_DIR/$MODEL_FILE" ] || { echo "test_image: no model $MODEL_DIR/$MODEL_FILE"; exit 1; }

CTR=""; RUN_PID=""; SRV_PID=""; TMP=$(mktemp -d /tmp/saserve-image.XXXXXX)
cleanup() {
    [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null
    [ -n "$RUN_PID" ] && { kill -TERM "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; }
    [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1
    [ "${KEEP_IMAGE:-1}" = 1 ] || buildah rmi "$IMAGE" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Debian mirror apt is configured with (deb822 .sources or one-line .list)
debian_mirror() {
    local f u
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        u=$(grep -hE '^[[:space:]]*(URIs:|deb[[:space:]])' "$f" | grep -oE '[a-z]+://[^[:space:]]+' |
            grep -E '/debian/?$' | head -n 1)
        [ -n "$u" ] && { echo "${u%/}"; return; }
    done
    echo http://deb.debian.org/debian
}

# ---- 1. base image
phase "base image $BASE"
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE" 2>/dev/null; then
    echo "  reusing $BASE from local storage ($(podman image inspect "$BASE" --format '{{.Created}}' 2>/dev/null | cut -c1-19)); REBUILD_BASE=1 to remake it"
else
    command -v debootstrap >/dev/null || { echo "test_image: missing debootstrap (make deps-deploy)"; exit 1; }
    MIRROR=$(debian_mirror)
    ROOTFS=$CACHE/rootfs-bookworm
    rm -rf "$ROOTFS"
    t=$SECONDS
    echo "  debootstrap --variant=minbase bookworm from $MIRROR"
    if ! debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log"; bad "debootstrap"; finish
    fi
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" --numeric-owner -cf - . |
        podman import --change 'CMD ["bash"]' - "$BASE" >"$CACHE/import.log" 2>&1 || {
        tail -n 5 "$CACHE/import.log"; bad "podman import"; finish; }
    rm -rf "$ROOTFS"
    echo "  debootstrap + import: $((SECONDS - t)) s"
fi
# FROM debian:bookworm-slim with --pull=never resolves localhost/ and docker.io/library/
podman tag "$BASE" "docker.io/library/$BASE" >/dev/null 2>&1
check "base image $BASE present" podman image exists "$BASE"

# ---- 2. build
phase "buildah bud (NATIVE=0, MAKE_JOBS=$MAKE_JOBS)"
t=$SECONDS
if buildah bud --isolation chroot --pull=never --format docker --layers \
        --build-arg MAKE_JOBS="$MAKE_JOBS" -t "$IMAGE" -f Dockerfile . >"$CACHE/build.log" 2>&1; then
    ok "buildah bud the unmodified Dockerfile ($((SECONDS - t)) s)"
else
    tail -n 30 "$CACHE/build.log"; bad "buildah bud"; finish
fi

# ---- 3. image configuration
phase "image configuration"
buildah inspect --type image "$IMAGE" >"$TMP/inspect.json" 2>/dev/null
cfg() { "$PY" - "$TMP/inspect.json" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["Docker"]["config"]
print(json.dumps(c.get(sys.argv[2])))
EOF
}
user=$(cfg User); env=$(cfg Env); ports=$(cfg ExposedPorts); stop=$(cfg StopSignal)
hc=$(cfg Healthcheck); vols=$(cfg Volumes); ep=$(cfg Entrypoint); cmd=$(cfg Cmd)
check "USER non-root ($user)" test "$user" = '"10001:10001"'
check "EXPOSE 8080 ($ports)" grep -q '"8080/tcp"' <<<"$ports"
check "STOPSIGNAL SIGTERM" test "$stop" = '"SIGTERM"'
check "HEALTHCHECK runs saserve-probe /health" grep -q 'saserve-probe", "/health"' <<<"$hc"
check "ENV SASERVE_MODEL=/models/model.gguf" grep -q '"SASERVE_MODEL=/models/model.gguf"' <<<"$env"
check "ENV SASERVE_HOST=0.0.0.0" grep -q '"SASERVE_HOST=0.0.0.0"' <<<"$env"
check "VOLUME /models" grep -q '"/models"' <<<"$vols"
check "ENTRYPOINT saserve, CMD serve --config /etc/saserve/saserve.json" \
    test "$ep $cmd" = '["/usr/local/bin/saserve"] ["serve", "--config", "/etc/saserve/saserve.json"]'
size=$(podman image inspect "$IMAGE" --format '{{.Size}}' 2>/dev/null || echo 0)
echo "  image size: $((size / 1000000)) MB"

CTR=$(buildah from --pull=never --name "saserve-test-$$" "$IMAGE" 2>"$TMP/from.err") || {
    cat "$TMP/from.err"; bad "buildah from"; finish; }
# buildah run would mount an empty anonymous volume over the image's VOLUME
# /models, hiding the -v bind; drop the declaration in this working container only
buildah config --volume /models- "$CTR"
brun() { buildah run --isolation chroot "$@"; }
# the compiler options recorded in the binary's debug info (DW_AT_producer; built with -g)
MNT=$(buildah mount "$CTR" 2>/dev/null)
march=$(grep -a -o -- '-march=[a-z0-9-]*' "$MNT/usr/local/bin/saserve" 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//')
buildah umount "$CTR" >/dev/null 2>&1
check "binary built with -march=x86-64-v3 (recorded: ${march:-none})" test "$march" = "-march=x86-64-v3"
check "runtime image has no compiler or make" \
    brun "$CTR" -- sh -c '! command -v cc && ! command -v gcc && ! command -v make >/dev/null'
brun "$CTR" -- ldd /usr/local/bin/saserve >"$TMP/ldd" 2>&1
check "every shared library of saserve resolves (ldd: $(wc -l <"$TMP/ldd") lines)" \
    bash -c "! grep -q 'not found' '$TMP/ldd' && grep -q libopenblas '$TMP/ldd'"

# ---- 4. serve from inside the container
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASEURL=http://127.0.0.1:$PORT
phase "serve in the container on $BASEURL, $MODEL_DIR mounted at /models"
RUN_ENV=(--env "SASERVE_MODEL=/models/$MODEL_FILE" --env SASERVE_HOST=127.0.0.1 --env "SASERVE_PORT=$PORT")
t=$SECONDS
brun -v "$MODEL_DIR:/models:ro" "${RUN_ENV[@]}" "$CTR" -- \
    /usr/local/bin/saserve serve --config /etc/saserve/saserve.json >"$TMP/server.log" 2>&1 &
RUN_PID=$!
code=000
for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASEURL/health") && [ "$code" = 200 ] && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.2
done
if [ "$code" = 200 ]; then ok "GET /health 200 from outside ($((SECONDS - t)) s after buildah run)"
else bad "GET /health" "got $code"; sed 's/^/    /' "$TMP/server.log" | tail -n 20; finish; fi

# the container's main process (what docker stop signals): saserve under buildah-chroot-exec
find_saserve() { # pid -> the descendant whose comm is saserve
    local p c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        if [ "$(cat /proc/"$c"/comm 2>/dev/null)" = saserve ]; then echo "$c"; return 0; fi
        p=$(find_saserve "$c") && { echo "$p"; return 0; }
    done
    return 1
}
SRV_PID=$(find_saserve "$RUN_PID")
uid=$(awk '/^Uid:/ {print $2}' /proc/"$SRV_PID"/status 2>/dev/null)
check "saserve runs as uid 10001 (pid ${SRV_PID:-?}, uid ${uid:-?})" test "${uid:-}" = 10001
check "HEALTHCHECK command exits 0 inside the container" \
    brun --env "SASERVE_PORT=$PORT" "$CTR" -- /usr/local/bin/saserve-probe /health

curl -s --max-time 30 -o "$TMP/c.json" -w '%{http_code}' "$BASEURL/v1/completions" \
    -d '{"prompt":"Once upon a time","max_tokens":24,"temperature":0}' >"$TMP/c.code"
text=$("$PY" - "$TMP/c.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["choices"][0]
assert c["finish_reason"] in ("length", "stop") and d["cache"]["kv_bytes"] > 0
print(json.dumps(c["text"]))
EOF
) && ok "POST /v1/completions: $(cat "$TMP/c.code"), text $text" ||
    bad "POST /v1/completions" "$(cat "$TMP/c.code") $(head -c 200 "$TMP/c.json")"

curl -s --max-time 5 "$BASEURL/metrics" >"$TMP/metrics"
check "/metrics: saserve_requests_total{endpoint=\"completions\",status=\"200\"} 1" \
    grep -qx 'saserve_requests_total{endpoint="completions",status="200"} 1' "$TMP/metrics"
check "/metrics: saserve_kv_bytes_used{kind}, _capacity, _saved{kind}, queue_depth" bash -c \
    "grep -q '^saserve_kv_bytes_used{kind=\"k\"}' '$TMP/metrics' && grep -q '^saserve_kv_bytes_capacity [1-9]' '$TMP/metrics' &&
     grep -q '^saserve_kv_bytes_saved{kind=\"v\"}' '$TMP/metrics' && grep -q '^saserve_queue_depth ' '$TMP/metrics'"

# ---- 5. SIGTERM drains
phase "SIGTERM to the container's main process (pid $SRV_PID) with a completion in flight"
curl -s --max-time 30 -o "$TMP/d.json" -w '%{http_code}' "$BASEURL/v1/completions" \
    -d '{"prompt":"Once upon a time","max_tokens":1000,"temperature":0.8,"seed":7}' >"$TMP/d.code" &
CURL_PID=$!
act=0
for _ in $(seq 1 100); do   # signal only once the sequence is running
    act=$(curl -s --max-time 1 "$BASEURL/metrics" | awk '$1 == "saserve_active_sequences" {print $2}')
    [ "${act:-0}" -ge 1 ] && break
    sleep 0.02
done
t=$SECONDS
kill -TERM "$SRV_PID"
wait "$CURL_PID"
echo "  SIGTERM sent with ${act:-0} active sequence(s); the request ended $((SECONDS - t)) s later"
SRV_PID=""
rc=124
for _ in $(seq 1 150); do
    if ! kill -0 "$RUN_PID" 2>/dev/null; then wait "$RUN_PID"; rc=$?; break; fi
    sleep 0.1
done
RUN_PID=""
check "in-flight completion answered 200 during the drain ($(cat "$TMP/d.code"), logged after SIGTERM)" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1])); assert d["choices"][0]["finish_reason"] in ("length", "stop")
log = open(sys.argv[2]).read(); assert log.index("SIGTERM: draining") < log.index(d["id"])' "$TMP/d.json" "$TMP/server.log"
check "saserve drained and exited 0 after SIGTERM ($((SECONDS - t)) s, rc $rc)" \
    bash -c "[ $rc = 0 ] && grep -q 'shutdown complete' '$TMP/server.log'"
grep -E 'SIGTERM|shutdown' "$TMP/server.log" | sed 's/^/    server: /'
finish
