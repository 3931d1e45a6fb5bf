#!/usr/bin/env bash
# tests/deploy/test_manifests.sh - fast offline checks of the deployment files:
#   yamllint          every YAML file under docker/ (config docker/.yamllint)
#   kubectl kustomize docker/k8s renders (offline)
#   kubectl apply --dry-run=client --validate=false -f docker/k8s/...
#                     only with KUBECTL_DRY_RUN=1: even a client dry run asks an
#                     API server for discovery, so it needs a reachable cluster
#   promtool          docker/prometheus.yml and docker/prometheus-rules.yml
#   nginx -t          docker/nginx/nginx.conf + saserve-proxy.conf (upstream
#                     host replaced by 127.0.0.1: Docker's DNS is not here)
#   check_manifests.py  kinds/apiVersions/required fields, and that the objects
#                     agree with each other, the Dockerfile and saserve's config
#                     (the ConfigMap JSON and env are fed to build/saserve)
# A tool that is not installed is skipped with a note; nothing is installed.
# Prints "N passed, M failed"; exit 1 when something failed.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
pass=0; fail=0; skip=0; failed=()
ok() { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); echo "FAIL $1"; [ -z "${2:-}" ] || sed 's/^/    /' <<<"$2" | head -n 20; }
skipped() { skip=$((skip + 1)); echo "SKIP $1"; }
have() { command -v "$1" >/dev/null 2>&1; }
TMP=$(mktemp -d /tmp/saserve-manifests.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

mapfile -t YAMLS < <(find docker -type f \( -name '*.yml' -o -name '*.yaml' \) | sort)

# yamllint
if have yamllint; then
    if out=$(yamllint -c docker/.yamllint -f parsable "${YAMLS[@]}" 2>&1); then
        ok "yamllint (${#YAMLS[@]} files)"
    else
        bad "yamllint" "$out"
    fi
else
    skipped "yamllint: not installed (apt-get install yamllint)"
fi

# kubectl: offline kustomize render; dry-run apply only against a configured cluster
if have kubectl; then
    if out=$(kubectl kustomize docker/k8s 2>&1); then
        n=$(grep -c '^kind:' <<<"$out")
        [ "$n" -eq "$(cat docker/k8s/saserve/*.yaml | grep -c '^kind:')" ] &&
            ok "kubectl kustomize docker/k8s renders $n objects" || bad "kubectl kustomize: $n objects" "$out"
    else
        bad "kubectl kustomize docker/k8s" "$out"
    fi
    if [ "${KUBECTL_DRY_RUN:-0}" = 1 ]; then
        for d in docker/k8s/saserve docker/k8s/prometheus-adapter; do
            if out=$(kubectl apply --dry-run=client --validate=false -f "$d" 2>&1); then
                ok "kubectl apply --dry-run=client -f $d ($(wc -l <<<"$out") objects)"
            else
                bad "kubectl apply --dry-run=client -f $d" "$out"
            fi
        done
    else
        skipped "kubectl apply --dry-run=client: needs an API server even for a client dry run (KUBECTL_DRY_RUN=1 with a kubeconfig to run it); the offline checks below stand in"
    fi
else
    skipped "kubectl: not installed"
fi

# promtool: the compose Prometheus config with its rule file at the local path
if have promtool; then
    sed 's#/etc/prometheus/saserve-rules.yml#prometheus-rules.yml#' docker/prometheus.yml >"$TMP/prometheus.yml"
    cp docker/prometheus-rules.yml "$TMP/prometheus-rules.yml"
    if out=$(promtool check config "$TMP/prometheus.yml" 2>&1); then
        ok "promtool check config docker/prometheus.yml (+ rules)"
    else
        bad "promtool check config" "$out"
    fi
else
    skipped "promtool: not installed (Debian package prometheus)"
fi

# nginx -t: the compose config, pointed at loopback and local paths
if have nginx && [ "$(id -u)" = 0 ]; then
    mkdir -p "$TMP/ngx"
    sed -e 's#server saserve:8080#server 127.0.0.1:8080#' \
        -e "s#/tmp/#$TMP/ngx/#" \
        -e "s#/etc/nginx/saserve-proxy.conf#$PWD/docker/nginx/saserve-proxy.conf#" docker/nginx/nginx.conf >"$TMP/ngx/nginx.conf"
    if out=$(nginx -t -q -e "$TMP/ngx/error.log" -p "$TMP/ngx" -c "$TMP/ngx/nginx.conf" 2>&1); then
        ok "nginx -t docker/nginx/nginx.conf + saserve-proxy.conf"
    else
        bad "nginx -t" "$out"
    fi
else
    skipped "nginx -t: nginx not installed or not root"
fi

# structural checks (PyYAML)
PY=""
for c in ${PYTHON:-} /usr/bin/python3 python3; do   # one with PyYAML; the system one starts fastest
    have "$c" && "$c" -c 'import yaml' 2>/dev/null && { PY=$c; break; }
done
if [ -n "$PY" ]; then
    "$PY" tests/deploy/check_manifests.py . "$BUILD/saserve" >"$TMP/py.log" 2>&1
    rc=$?
    grep -E '^(FAIL|SKIP)' "$TMP/py.log"
    p=$(grep -c '^PASS' "$TMP/py.log"); f=$(grep -c '^FAIL' "$TMP/py.log"); s=$(grep -c '^SKIP' "$TMP/py.log")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    echo "python structural checks: $p passed, $f failed, $s skipped (${VERBOSE:+see below}${VERBOSE:-VERBOSE=1 lists them})"
    [ -z "${VERBOSE:-}" ] || grep '^PASS' "$TMP/py.log"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "check_manifests.py crashed" "$(tail -n 20 "$TMP/py.log")"; fi
else
    skipped "structural checks: python3 with PyYAML (python3-yaml) not available"
fi

echo
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
[ "$skip" -eq 0 ] || echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
