#!/usr/bin/env python3
"""Offline checks of the deployment files (run by tests/deploy/test_manifests.sh).

Prints one line per check: "PASS name", "FAIL name: why" or "SKIP name: why".
Without a Kubernetes API server, `kubectl apply --dry-run=client` cannot run
(kubectl needs server discovery even for client dry runs), so this does the
equivalent offline: every document parses, has a known apiVersion/kind pair
and the fields Kubernetes requires, and the objects agree with each other and
with the Dockerfile and saserve's configuration.

usage: check_manifests.py REPO_ROOT [SASERVE_BINARY]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # the caller skips us when PyYAML is missing
    print("SKIP python structural checks: no PyYAML (python3-yaml)")
    sys.exit(0)

ROOT = os.path.abspath(sys.argv[1])
SASERVE = sys.argv[2] if len(sys.argv) > 2 else ""
K8S = os.path.join(ROOT, "docker", "k8s")
results = []


def report(ok, name, why=""):
    results.append(ok)
    print(("PASS " if ok else "FAIL ") + name + ("" if ok or not why else ": " + why))


def check(name, cond, why=""):
    report(bool(cond), name, why)
    return bool(cond)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def get(d, *keys, default=None):
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and k < len(d):
            d = d[k]
        else:
            return default
    return d


# apiVersion -> kinds it serves, for the kinds used here
KNOWN = {
    "v1": {"ConfigMap", "Service", "PersistentVolumeClaim"},
    "apps/v1": {"Deployment"},
    "autoscaling/v2": {"HorizontalPodAutoscaler"},
    "policy/v1": {"PodDisruptionBudget"},
}
# top-level fields each kind must have (beyond apiVersion/kind/metadata.name)
REQUIRED = {
    "ConfigMap": [("data",)],
    "Service": [("spec", "ports"), ("spec", "selector")],
    "PersistentVolumeClaim": [("spec", "accessModes"), ("spec", "resources", "requests", "storage")],
    "Deployment": [("spec", "selector", "matchLabels"), ("spec", "template", "metadata", "labels"),
                   ("spec", "template", "spec", "containers")],
    "HorizontalPodAutoscaler": [("spec", "scaleTargetRef", "name"), ("spec", "maxReplicas"), ("spec", "metrics")],
    "PodDisruptionBudget": [("spec", "selector", "matchLabels")],
}


def parse_duration(s):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(s))
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) if m and s else None


def compose_default(v):
    """'${X:-2}' -> '2'; other text unchanged."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))


def saserve_accepts(name, config_json=None, env=None):
    """Run saserve with this config file / environment and a model that does
    not exist: exit 2 (model error) means the configuration was accepted,
    exit 1 is a configuration error (unknown key or SASERVE_* variable, bad value)."""
    if not SASERVE or not os.access(SASERVE, os.X_OK):
        print("SKIP %s: no saserve binary (make build/saserve)" % name)
        return
    env = dict(env or {})
    args = [SASERVE, "serve"]
    tmp = None
    if config_json is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        tmp.write(config_json)
        tmp.close()
        args += ["--config", tmp.name]
    env["SASERVE_MODEL"] = "/nonexistent/model.gguf"
    try:
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=20)
        check(name, p.returncode == 2, "exit %d: %s" % (p.returncode, p.stderr.strip()[:200]))
    finally:
        if tmp:
            os.unlink(tmp.name)


# ---------------------------------------------------------------- Kubernetes
objs = {}  # (kind, name) -> object
manifest_files = sorted(os.path.join(K8S, "saserve", f) for f in os.listdir(os.path.join(K8S, "saserve"))
                        if f.endswith((".yaml", ".yml")))
adapter_files = sorted(os.path.join(K8S, "prometheus-adapter", f)
                       for f in os.listdir(os.path.join(K8S, "prometheus-adapter")) if f.endswith((".yaml", ".yml")))
for path in manifest_files + adapter_files:
    rel = os.path.relpath(path, ROOT)
    try:
        docs = load_all(path)
    except yaml.YAMLError as e:
        report(False, "%s parses" % rel, str(e).splitlines()[0])
        continue
    for d in docs:
        kind, api, name = d.get("kind"), d.get("apiVersion"), get(d, "metadata", "name")
        label = "%s %s/%s" % (rel, kind, name)
        ok = check(label + ": known apiVersion/kind",
                   api in KNOWN and kind in KNOWN[api], "%s %s" % (api, kind))
        ok &= check(label + ": metadata.name", isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name))
        missing = [".".join(r) for r in REQUIRED.get(kind, []) if get(d, *r) in (None, [], {})]
        check(label + ": required fields", not missing, "missing " + ", ".join(missing))
        objs[(kind, name)] = d

dep = objs.get(("Deployment", "saserve"))
svc = objs.get(("Service", "saserve"))
cm = objs.get(("ConfigMap", "saserve-config"))
hpa = objs.get(("HorizontalPodAutoscaler", "saserve"))
pdb = objs.get(("PodDisruptionBudget", "saserve"))
adapter = objs.get(("ConfigMap", "prometheus-adapter"))
check("k8s: Deployment, Service, ConfigMap, HPA, PDB, adapter rules present",
      all(o is not None for o in (dep, svc, cm, hpa, pdb, adapter)))

cfg = {}
if cm:
    try:
        cfg = json.loads(cm["data"]["saserve.json"])
        check("ConfigMap saserve.json is JSON", True)
    except (KeyError, ValueError) as e:
        check("ConfigMap saserve.json is JSON", False, str(e))
    if cfg:
        # the image's environment wins over the file: test the pair together
        saserve_accepts("ConfigMap saserve.json accepted by saserve (with the image's SASERVE_HOST)",
                        json.dumps(cfg), {"SASERVE_HOST": "0.0.0.0"})
grace = int(cfg.get("shutdown_grace", 10))
port = int(cfg.get("port", 8080))

if dep:
    pod = dep["spec"]["template"]
    ps = pod["spec"]
    labels = pod["metadata"]["labels"]
    c = ps["containers"][0]
    sel = dep["spec"]["selector"]["matchLabels"]
    check("Deployment selector matches its pod labels", sel.items() <= labels.items())
    check("Deployment leaves replicas to the HPA", "replicas" not in dep["spec"])
    check("Deployment enableServiceLinks: false (no SASERVE_SERVICE_HOST / SASERVE_PORT=tcp://...)",
          ps.get("enableServiceLinks") is False)
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    check("container port http = configured port %d" % port, ports.get("http") == port, str(ports))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        hg = get(c, probe, "httpGet", default={})
        check("%s: GET /health on port http" % probe, hg.get("path") == "/health" and hg.get("port") in ("http", port),
              str(hg))
    pre = get(c, "lifecycle", "preStop", "exec", "command", default=[])
    sleep_s = int(pre[-1]) if pre and "sleep" in pre[0] and str(pre[-1]).isdigit() else None
    check("preStop sleeps before SIGTERM (%s s)" % sleep_s, sleep_s and sleep_s > 0, str(pre))
    tgps = ps.get("terminationGracePeriodSeconds", 30)
    check("terminationGracePeriodSeconds %s > preStop %s s + shutdown_grace %d s" % (tgps, sleep_s, grace),
          sleep_s is not None and tgps > sleep_s + grace)
    live = c.get("livenessProbe", {})
    check("liveness failure window (%ds) outlasts the drain (%ds)" % (
        live.get("periodSeconds", 10) * live.get("failureThreshold", 3), grace),
        live.get("periodSeconds", 10) * live.get("failureThreshold", 3) > grace)
    res = c.get("resources", {})
    check("resources: cpu and memory requests and limits",
          all(get(res, a, b) for a in ("requests", "limits") for b in ("cpu", "memory")), str(res))
    cpu = str(get(res, "limits", "cpu", default="0"))
    cpu_n = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    check("threads (%s) <= cpu limit (%s)" % (cfg.get("threads"), cpu), int(cfg.get("threads", 1)) <= max(cpu_n, 1))
    sc = ps.get("securityContext", {})
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        m = re.search(r"^USER\s+(\d+)", f.read(), re.M)
    check("pod runs as non-root uid = Dockerfile USER (%s)" % (m.group(1) if m else "?"),
          sc.get("runAsNonRoot") is True and m and str(sc.get("runAsUser")) == m.group(1))
    mounts = {v["name"]: v["mountPath"] for v in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in ps.get("volumes", [])}
    args = c.get("args", [])
    cfgpath = args[args.index("--config") + 1] if "--config" in args else ""
    cmv = [n for n, v in vols.items() if get(v, "configMap", "name") == get(cm, "metadata", "name")]
    check("config file %s comes from ConfigMap %s" % (cfgpath, get(cm, "metadata", "name")),
          cmv and os.path.dirname(cfgpath) == mounts.get(cmv[0]) and os.path.basename(cfgpath) in cm["data"])
    env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    model = env.get("SASERVE_MODEL", "/models/model.gguf")
    pvc = [n for n, v in vols.items() if get(v, "persistentVolumeClaim", "claimName")]
    check("model %s on the read-only models volume" % model,
          pvc and model.startswith(mounts.get(pvc[0], "?") + "/") and
          ("PersistentVolumeClaim", get(vols[pvc[0]], "persistentVolumeClaim", "claimName")) in objs)
    if env:
        saserve_accepts("Deployment env (%s) accepted by saserve" % ", ".join(sorted(env)), None,
                        dict(env, SASERVE_PORT=str(port)))
    if svc:
        check("Service selector matches the pod labels", svc["spec"]["selector"].items() <= labels.items())
        check("Service targetPort names the container port",
              all(p.get("targetPort") in ports or p.get("targetPort") in ports.values() for p in svc["spec"]["ports"]))
    if pdb:
        check("PDB selector matches the pod labels", pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())

if hpa and dep:
    ref = hpa["spec"]["scaleTargetRef"]
    check("HPA targets Deployment saserve", ref.get("kind") == "Deployment" and ref.get("name") == "saserve")
    check("HPA minReplicas >= 2 <= maxReplicas", 2 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"])
    names = [get(m, "pods", "metric", "name") for m in hpa["spec"]["metrics"] if m.get("type") == "Pods"]
    check("HPA scales on a saserve KV metric", any(n and "kv" in n for n in names), str(names))
    if adapter:
        try:
            rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
            served = set()
            for r in rules:
                ok = all(k in r for k in ("seriesQuery", "resources", "name", "metricsQuery"))
                q = r.get("metricsQuery", "")
                check("adapter rule %s: fields and <<.GroupBy>>/<<.LabelMatchers>>" % get(r, "name", "as"),
                      ok and "<<.GroupBy>>" in q and "<<.LabelMatchers>>" in q)
                served.add(get(r, "name", "as"))
            check("every HPA metric is served by an adapter rule", set(names) <= served,
                  "missing %s" % (set(names) - served))
        except (KeyError, TypeError, yaml.YAMLError) as e:
            check("adapter config.yaml parses", False, str(e))

# kustomization: lists exactly the files of saserve/
try:
    kz = load_all(os.path.join(K8S, "kustomization.yaml"))[0]
    listed = sorted(os.path.normpath(os.path.join(K8S, r)) for r in kz.get("resources", []))
    check("kustomization lists every manifest in docker/k8s/saserve/", listed == manifest_files,
          "%s vs %s" % (listed, manifest_files))
except (OSError, yaml.YAMLError, IndexError) as e:
    check("kustomization.yaml parses", False, str(e))

# ------------------------------------------------------------------- compose
D = os.path.join(ROOT, "docker")
try:
    comp = load_all(os.path.join(D, "docker-compose.yml"))[0]
    sv = comp.get("services", {})
    check("compose: services saserve, nginx, prometheus", {"saserve", "nginx", "prometheus"} <= set(sv))
    s = sv.get("saserve", {})
    check("compose saserve: healthcheck runs saserve-probe /health",
          "/usr/local/bin/saserve-probe" in get(s, "healthcheck", "test", default=[]))
    check("compose saserve: stop_grace_period > shutdown_grace, SIGTERM",
          (parse_duration(s.get("stop_grace_period")) or 10) > grace and s.get("stop_signal", "SIGTERM") == "SIGTERM")
    check("compose saserve: replicas publish no host port (nginx does)", "ports" not in s)
    check("compose saserve: models mounted read-only at /models",
          any(str(v).endswith(":/models:ro") for v in s.get("volumes", [])))
    cenv = {k: compose_default(v) for k, v in (s.get("environment") or {}).items()}
    check("compose saserve: SASERVE_MODEL under /models", cenv.get("SASERVE_MODEL", "").startswith("/models/"))
    if cenv:
        saserve_accepts("compose environment (%s) accepted by saserve" % ", ".join(sorted(cenv)), None, cenv)
    check("compose saserve: replicas from deploy.replicas", get(s, "deploy", "replicas") is not None)
    for name in ("nginx", "prometheus"):
        for v in sv.get(name, {}).get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("."):
                check("compose %s: mounted file %s exists" % (name, src), os.path.isfile(os.path.join(D, src)))
    check("compose nginx: waits for healthy replicas",
          get(sv, "nginx", "depends_on", "saserve", "condition") == "service_healthy")
    prom = load_all(os.path.join(D, "prometheus.yml"))[0]
    job = [j for j in prom.get("scrape_configs", []) if j.get("job_name") == "saserve"]
    check("prometheus.yml: job saserve discovers the compose service by DNS",
          job and "saserve" in get(job[0], "dns_sd_configs", 0, "names", default=[]))
    rule_mounts = [str(v).split(":")[1] for v in sv["prometheus"].get("volumes", []) if "rules" in str(v)]
    check("prometheus.yml rule_files are mounted by compose", set(prom.get("rule_files", [])) <= set(rule_mounts),
          "%s vs %s" % (prom.get("rule_files"), rule_mounts))
except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
    check("compose / prometheus files parse", False, repr(e))

with open(os.path.join(D, "nginx", "nginx.conf")) as f:
    ngx = f.read()
with open(os.path.join(D, "nginx", "saserve-proxy.conf")) as f:
    prx = f.read()
check("nginx.conf: least_conn upstream over the saserve service",
      re.search(r"upstream saserve \{[^}]*least_conn;[^}]*server saserve:8080", ngx, re.S))
check("saserve-proxy.conf: retries on error, timeout and 503",
      re.search(r"proxy_next_upstream [^;]*\berror\b[^;]*\btimeout\b[^;]*\bhttp_503\b", prx))

# ---------------------------------------------------------------- Dockerfile
with open(os.path.join(ROOT, "Dockerfile")) as f:
    df = f.read()
froms = re.findall(r"^FROM\s+(\S+)", df, re.M)
base = re.search(r"^ARG BASE_IMAGE=(\S+)", df, re.M)
check("Dockerfile: two stages on debian:bookworm-slim",
      len(froms) == 2 and base and base.group(1) == "debian:bookworm-slim")
for directive in (r"^USER\s+\d+", r"^EXPOSE 8080$", r"^STOPSIGNAL SIGTERM$", r"^HEALTHCHECK .*\n?.*/health",
                  r"SASERVE_MODEL=/models/model.gguf", r"SASERVE_HOST=0.0.0.0", r"NATIVE=\"?\$\{NATIVE\}"):
    check("Dockerfile: /%s/" % directive, re.search(directive, df, re.M))
runtime = df[df.rindex("FROM"):]
check("Dockerfile runtime stage installs no -dev package or compiler",
      not re.search(r"-dev\b|build-essential|\bgcc\b", runtime))
with open(os.path.join(ROOT, ".dockerignore")) as f:
    di = f.read().split()
for p in ("Makefile", "config/", "engine/", "server/", "docker/probe.c"):
    check(".dockerignore lets %s into the build context" % p, "!" + p in di)

print("python checks: %d passed, %d failed" % (results.count(True), results.count(False)))
sys.exit(1 if False in results else 0)
