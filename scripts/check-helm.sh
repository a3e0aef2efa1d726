#!/usr/bin/env bash
# Deployment checks: the Helm chart (helm/llmopt), the Dockerfile and docker-compose.yml.
#
#   scripts/check-helm.sh
#
# Installs the pinned tools on first use (scripts/deploy-tools.sh: ~1.5 min), then, in well under
# a minute:
#   - helm lint --strict, with the default values and with ci/all-on-values.yaml (every toggle on);
#   - helm template of both, validated by kubernetes-validate --strict against the Kubernetes
#     1.25 (the chart's kubeVersion floor) and 1.37 schemas;
#   - the Prometheus Operator kinds (ServiceMonitor, PrometheusRule), which kubernetes-validate has
#     no schemas for (it only warns "Couldn't find schema" and passes), are taken out of its input
#     and checked by the chart-specific checks below instead (required fields, selectors matching
#     the rendered Services, rules equal to files/prometheus/rules.yml, promtool check rules);
#   - chart-specific checks of the rendered manifests: llmopt.toml parses as TOML with whole
#     numbers as integers (Helm reads numbers as floats), every volume mount has a volume, every
#     selector matches its pods, probes use the named port `admin`, Secrets and claims referenced
#     are rendered or named as existing ones in the values, and so on;
#   - the same rendering checks (without checkov) for two small variants that take the other
#     side of each either/or (chart-created Secrets, emptyDir or existing claim, features off);
#   - every ci/bad-values-*.yaml must make helm template fail with the message its `# expect:` line
#     names (so it fails for the reason it was written for), and helm lint fail as well (or, for
#     the few template-logic checks that lint only logs, `# lint: warns`, log that message);
#   - checkov over the rendered chart (both value sets) and the Dockerfile at the repository root,
#     with the skip list below;
#   - docker-compose.yml at the repository root, when there is one: `docker-compose config --quiet`
#     (the static binary) and checkov's secrets scan (checkov has no compose framework);
#   - if an llmopt binary is at hand ($LLMOPT_BIN, target/release/llmopt or target/debug/llmopt),
#     `llmopt config show` on each rendered llmopt.toml: the binary itself accepts the file.
# Every check counts; the script exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
log() { printf '[check-helm] %s\n' "$*" >&2; }
source scripts/deploy-tools.sh

if ! llmopt_deploy_tools; then
  echo "helm checks: 0 passed, 1 failed (tools not installed)"
  exit 1
fi

CHART=${LLMOPT_CHART:-helm/llmopt}   # another copy of the chart: LLMOPT_CHART=DIR
RELEASE=llmopt
NAMESPACE=llmopt
WORK=target/check-helm
rm -rf "$WORK"
mkdir -p "$WORK"

# checkov: skipped checks, each with the reason it does not apply. Nothing else is skipped.
#
# Both value sets:
#   (none)
# Default values only (the all-on values satisfy them, so there they are enforced):
#   CKV_K8S_43 "Image should use digest": the default image is the one built locally
#     (Dockerfile / scripts/image-build.sh) and has no registry digest to pin before it is pushed;
#     image.digest pins it, and the all-on run sets one.
#   CKV_K8S_15 "Image Pull Policy should be Always": IfNotPresent is right for immutable version
#     tags and for images loaded onto the nodes without a registry; image.pullPolicy is a value,
#     and the all-on run (Always) enforces the check.
# All-on values only (the default values have no Secrets):
#   CKV_K8S_35 "Prefer using secrets as files over secrets as environment variables": llmopt
#     reads its secrets only from LLMOPT_* environment variables (figment's env provider, e.g.
#     LLMOPT_TRANSPORT__KAFKA__SASL_PASSWORD); it has no file-based secret input to mount them to.
# Dockerfile: nothing skipped (its HEALTHCHECK runs `llmopt probe`).
CHECKOV_SKIP_DEFAULT=CKV_K8S_43,CKV_K8S_15
CHECKOV_SKIP_ALL_ON=CKV_K8S_35

passed=0
failed=0
# check NAME COMMAND...: runs COMMAND, counts it, shows its output only when it fails.
check() {
  local name=$1 out=$WORK/last.log
  shift
  if "$@" >"$out" 2>&1; then
    passed=$((passed + 1))
    log "ok    $name"
  else
    failed=$((failed + 1))
    log "FAIL  $name"
    sed 's/^/        /' "$out" >&2
  fi
}

# Chart-specific checks of rendered manifests (stdin), by a small Python program.
cat >"$WORK/check_manifests.py" <<'PY'
"""Checks of a rendered llmopt chart that neither kubernetes-validate nor checkov make.

usage: check_manifests.py MODE MANIFESTS [ARGS]
  filter MANIFESTS                 print the documents kubernetes-validate has schemas for
  check MANIFESTS CHART [VALUES]   the checks below; writes llmopt.toml and rules next to MANIFESTS
"""
import json, os, re, sys, tomllib

import yaml

CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def is_crd(doc):
    return (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS

errors = []
def fail(msg):
    errors.append(msg)

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def whole_floats(value, path=""):
    if isinstance(value, float) and value.is_integer():
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from whole_floats(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from whole_floats(v, f"{path}[{n}]")

def check(manifests, chart, values_file=None):
    docs = load(manifests)
    # Secrets and claims the values name as existing ones: referenced, by design not rendered.
    external = set()
    if values_file:
        with open(values_file) as f:
            v = yaml.safe_load(f) or {}
        dig = lambda *keys: __import__("functools").reduce(lambda d, k: (d or {}).get(k), keys, v)
        external = {x for x in (dig("kafka", "sasl", "existingSecret"), dig("redis", "auth", "existingSecret"),
                                dig("quantizer", "persistence", "existingClaim"),
                                dig("quantizer", "models", "existingClaim"),
                                dig("ingest", "otlp", "existingSecret"),
                                dig("console", "auth", "existingSecret")) if x}
    out_dir = os.path.dirname(manifests)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        if d["kind"] != "Namespace" and not d["metadata"].get("namespace"):
            fail(f"{d['kind']}/{d['metadata']['name']}: no metadata.namespace")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    # llmopt.toml
    configs = [d for d in by_kind.get("ConfigMap", []) if "llmopt.toml" in d.get("data", {})]
    if len(configs) != 1:
        fail(f"expected one ConfigMap with llmopt.toml, found {len(configs)}")
    for cm in configs:
        text = cm["data"]["llmopt.toml"]
        with open(os.path.join(out_dir, "llmopt.toml"), "w") as f:
            f.write(text)
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(f"llmopt.toml is not valid TOML: {e}")
            cfg = {}
        if cfg:
            t, k = cfg.get("transport", {}), cfg.get("transport", {}).get("kafka", {})
            if t.get("kind") != "kafka" or cfg.get("state", {}).get("kind") != "redis":
                fail("llmopt.toml: transport.kind must be kafka and state.kind redis")
            for key, v in (("transport.partitions", t.get("partitions")),
                           ("transport.kafka.session_timeout_ms", k.get("session_timeout_ms")),
                           ("transport.kafka.replication_factor", k.get("replication_factor"))):
                if not isinstance(v, int):
                    fail(f"llmopt.toml: {key} = {v!r} is not an integer")
            for p in whole_floats(cfg):
                fail(f"llmopt.toml: {p} is a whole number written as a float (integer fields refuse it)")
            for secret in ("sasl_password", "sasl_username"):
                if secret in k:
                    fail(f"llmopt.toml: transport.kafka.{secret} must come from a Secret, not the ConfigMap")
            if "redis_password" in cfg.get("state", {}) or re.search(r"://[^/@]*:[^/@]*@", cfg.get("state", {}).get("redis_url", "")):
                fail("llmopt.toml: the Redis password must come from a Secret, not the ConfigMap")

    # Deployments: pods, selectors, probes, mounts, secrets.
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        fail("no Deployment rendered")
    secrets_rendered = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    pod_labels = {}
    for dep in deployments:
        name = dep["metadata"]["name"]
        spec = dep["spec"]
        tmpl = spec["template"]
        labels = tmpl["metadata"].get("labels", {})
        pod_labels[name] = labels
        if not selects(spec["selector"]["matchLabels"], labels):
            fail(f"Deployment/{name}: selector does not match its pod labels")
        ann = tmpl["metadata"].get("annotations", {})
        if not re.fullmatch(r"[0-9a-f]{64}", str(ann.get("checksum/config", ""))):
            fail(f"Deployment/{name}: no checksum/config annotation on the pods")
        pod = tmpl["spec"]
        if pod.get("automountServiceAccountToken") is not False:
            fail(f"Deployment/{name}: automountServiceAccountToken is not false")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            ports = {p.get("name"): p for p in c.get("ports", [])}
            if "admin" not in ports:
                fail(f"Deployment/{name}: container {c['name']} has no port named admin")
            for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
                get = (c.get(probe) or {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") != "admin":
                    fail(f"Deployment/{name}: {probe} is not GET {path} on port admin")
            args = c.get("args", [])
            expected = ["console"] if c["name"] == "console" else ["run", c["name"]]
            if args[:len(expected)] != expected or "--config" not in args:
                fail(f"Deployment/{name}: args {args} are not `{' '.join(expected)} --config ...`")
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and "ALL" in sc.get("capabilities", {}).get("drop", [])):
                fail(f"Deployment/{name}: container securityContext is not read-only/no-escalation/drop ALL")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                fail(f"Deployment/{name}: no writable /tmp (the root filesystem is read-only)")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    fail(f"Deployment/{name}: mount {m['mountPath']} names no volume {m['name']}")
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets_rendered | external:
                    fail(f"Deployment/{name}: env {e['name']} refers to Secret {ref['name']}, neither rendered nor an existingSecret")
        psc = pod.get("securityContext", {})
        if not (psc.get("runAsNonRoot") and psc.get("runAsUser") == 65532):
            fail(f"Deployment/{name}: pod does not run as non-root uid 65532")
        for v in volumes.values():
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in names and claim not in external:
                fail(f"Deployment/{name}: PVC {claim} is neither rendered nor an existingClaim")
            cm = (v.get("configMap") or {}).get("name")
            if cm and cm.endswith("-config") and ("ConfigMap", cm) not in names:
                fail(f"Deployment/{name}: ConfigMap {cm} is not rendered")

    # Ingest's OTLP/HTTP receiver: listening on a named container port that its Service and
    # NetworkPolicy open, or not at all.
    for dep in deployments:
        name = dep["metadata"]["name"]
        for c in dep["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            ports = {p.get("name"): p for p in c.get("ports", [])}
            listen = env.get("LLMOPT_INGEST__OTLP__LISTEN", {}).get("value")
            if bool(listen) != ("otlp" in ports):
                fail(f"Deployment/{name}: OTLP listen {listen!r} without a port named otlp, or the reverse")
            if not listen:
                continue
            if c["name"] != "ingest" or listen != f"0.0.0.0:{ports['otlp']['containerPort']}":
                fail(f"Deployment/{name}: OTLP listen {listen} does not match port otlp on ingest")
            svc = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == name]
            if not svc or not any(p.get("name") == "otlp" and p.get("targetPort") == "otlp"
                                  for p in svc[0]["spec"]["ports"]):
                fail(f"Service/{name}: does not expose the OTLP receiver (port otlp -> otlp)")
            for np in by_kind.get("NetworkPolicy", []):
                if np["metadata"]["name"] == name and not any(
                        any(p.get("port") == "otlp" for p in rule.get("ports", []))
                        for rule in np["spec"].get("ingress", [])):
                    fail(f"NetworkPolicy/{name}: does not admit the OTLP receiver's port")

    def selected(kind, selector):
        hits = [n for n, l in pod_labels.items() if selects(selector, l)]
        if len(hits) != 1:
            fail(f"{kind}: selector {selector} matches {len(hits)} Deployments, not 1")

    for svc in by_kind.get("Service", []):
        selected(f"Service/{svc['metadata']['name']}", svc["spec"].get("selector", {}))
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selected(f"PodDisruptionBudget/{pdb['metadata']['name']}", pdb["spec"]["selector"]["matchLabels"])
    for np in by_kind.get("NetworkPolicy", []):
        selected(f"NetworkPolicy/{np['metadata']['name']}", np["spec"]["podSelector"]["matchLabels"])
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if ("Deployment", ref["name"]) not in names:
            fail(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: target {ref['name']} is not rendered")
        elif "replicas" in next(d for d in deployments if d["metadata"]["name"] == ref["name"])["spec"]:
            fail(f"Deployment/{ref['name']}: sets replicas although an HPA scales it")
        if not ref["name"].endswith(("-ingest", "-aggregator")):
            fail(f"HorizontalPodAutoscaler on {ref['name']}: only ingest and the aggregator scale horizontally")

    # ServiceMonitor: no schema in kubernetes-validate, so its required fields are checked here.
    for sm in by_kind.get("ServiceMonitor", []):
        n, spec = sm["metadata"]["name"], sm.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        svcs = [s for s in by_kind.get("Service", []) if selects(sel, s["metadata"].get("labels", {}))]
        if not svcs:
            fail(f"ServiceMonitor/{n}: selector {sel} matches no rendered Service")
        eps = spec.get("endpoints")
        if not isinstance(eps, list) or not eps:
            fail(f"ServiceMonitor/{n}: spec.endpoints is empty")
        for ep in eps or []:
            if not any(p.get("name") == ep.get("port") for s in svcs for p in s["spec"]["ports"]):
                fail(f"ServiceMonitor/{n}: endpoint port {ep.get('port')!r} is not a port of the selected Services")
            for key in ("interval", "scrapeTimeout"):
                if key in ep and not DURATION.match(str(ep[key])):
                    fail(f"ServiceMonitor/{n}: {key} {ep[key]!r} is not a duration")
        job = spec.get("jobLabel")
        if job and not all(job in s["metadata"].get("labels", {}) for s in svcs):
            fail(f"ServiceMonitor/{n}: jobLabel {job} is not a label of every selected Service")
        unknown = set(spec) - {"jobLabel", "namespaceSelector", "selector", "endpoints", "targetLabels",
                               "podTargetLabels", "sampleLimit", "attachMetadata"}
        if unknown:
            fail(f"ServiceMonitor/{n}: unknown spec fields {sorted(unknown)}")

    # PrometheusRule: likewise; spec.groups must be files/prometheus/rules.yml's groups, unchanged.
    for pr in by_kind.get("PrometheusRule", []):
        n, groups = pr["metadata"]["name"], (pr.get("spec") or {}).get("groups")
        if not isinstance(groups, list) or not groups:
            fail(f"PrometheusRule/{n}: spec.groups is empty")
            continue
        seen = set()
        for g in groups:
            if not g.get("name") or g["name"] in seen:
                fail(f"PrometheusRule/{n}: group without a name or with a duplicate name {g.get('name')!r}")
            seen.add(g.get("name"))
            if not g.get("rules"):
                fail(f"PrometheusRule/{n}: group {g.get('name')} has no rules")
            for r in g.get("rules") or []:
                if ("record" in r) == ("alert" in r) or not str(r.get("expr", "")).strip():
                    fail(f"PrometheusRule/{n}: rule {r} needs an expr and exactly one of record/alert")
                if "for" in r and not DURATION.match(str(r["for"])):
                    fail(f"PrometheusRule/{n}: rule {r.get('alert')} has a bad `for` {r['for']!r}")
        with open(os.path.join(chart, "files/prometheus/rules.yml")) as f:
            if yaml.safe_load(f)["groups"] != groups:
                fail(f"PrometheusRule/{n}: spec.groups differs from files/prometheus/rules.yml")
        with open(os.path.join(out_dir, "rules.yml"), "w") as f:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)

    # Grafana dashboard: the JSON, unchanged, with the sidecar's label.
    for cm in by_kind.get("ConfigMap", []):
        if "llmopt.json" in cm.get("data", {}):
            if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
                fail(f"ConfigMap/{cm['metadata']['name']}: no grafana_dashboard: \"1\" label")
            with open(os.path.join(chart, "files/grafana/llmopt.json")) as f:
                if json.loads(cm["data"]["llmopt.json"]) != json.load(f):
                    fail(f"ConfigMap/{cm['metadata']['name']}: dashboard differs from files/grafana/llmopt.json")

    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"{len(docs)} documents checked")

mode, manifests = sys.argv[1], sys.argv[2]
if mode == "filter":
    docs = load(manifests)
    yaml.safe_dump_all([d for d in docs if not is_crd(d)], sys.stdout, sort_keys=False)
elif mode == "check":
    check(manifests, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
else:
    sys.exit(f"unknown mode {mode}")
PY
PY=$LLMOPT_DEPLOY_PYTHON
CHECKER=$WORK/check_manifests.py

# kubernetes-validate on everything but the Prometheus Operator kinds; its "Couldn't find schema"
# warning (an unknown kind slipping through) counts as a failure.
kube_validate() { # manifests kube-version
  local filtered=$1.core.yaml
  "$PY" "$CHECKER" filter "$1" >"$filtered" || return 1
  local out rc
  out=$("$KUBERNETES_VALIDATE" --strict --quiet -k "$2" "$filtered" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 0 ]] && ! grep -q "Couldn't find schema" <<<"$out"
}

promtool_rules() { # dir
  [[ -f $1/rules.yml ]] || { echo "no PrometheusRule rendered"; return 1; }
  promtool check rules "$1/rules.yml"
}

llmopt_config_show() { # llmopt.toml
  # Only the file: no LLMOPT_* from the caller's environment.
  env -i PATH="$PATH" HOME="$HOME" "$LLMOPT_CHECK_BIN" config show --config "$1"
}

LLMOPT_CHECK_BIN=${LLMOPT_BIN:-}
if [[ -z $LLMOPT_CHECK_BIN ]]; then
  for candidate in target/release/llmopt target/debug/llmopt; do
    if [[ -x $candidate ]]; then LLMOPT_CHECK_BIN=$candidate; break; fi
  done
fi

render_and_check() { # label values-file-or-empty checkov-skips|"no-checkov"
  local label=$1 values=$2 skips=$3 dir=$WORK/$1
  local -a vf=()
  [[ -n $values ]] && vf=(-f "$values")
  mkdir -p "$dir"
  check "helm lint --strict ($label)" "$HELM" lint --strict "$CHART" "${vf[@]}"
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${vf[@]}" >"$dir/manifests.yaml" 2>"$dir/render.log"; then
    failed=$((failed + 1))
    log "FAIL  helm template ($label)"
    sed 's/^/        /' "$dir/render.log" >&2
    return
  fi
  passed=$((passed + 1))
  log "ok    helm template ($label)"
  check "kubernetes-validate --strict, Kubernetes 1.25 ($label)" kube_validate "$dir/manifests.yaml" 1.25.0
  check "kubernetes-validate --strict, Kubernetes 1.37 ($label)" kube_validate "$dir/manifests.yaml" 1.37.0
  check "chart checks of the rendered manifests ($label)" "$PY" "$CHECKER" check "$dir/manifests.yaml" "$CHART" $values
  if grep -q '^kind: PrometheusRule' "$dir/manifests.yaml"; then
    check "promtool check rules on the PrometheusRule ($label)" promtool_rules "$dir"
  fi
  if [[ -f $dir/llmopt.toml ]]; then
    check "llmopt config show accepts llmopt.toml ($label)" llmopt_config_show "$dir/llmopt.toml"
  fi
  [[ $skips == no-checkov ]] && return
  check "checkov, rendered chart ($label)" "$CHECKOV" --quiet --compact --skip-download \
    --framework kubernetes --skip-check "$skips" -d "$dir"
}

log "helm $("$HELM" version --short), kubernetes-validate $("$KUBERNETES_VALIDATE" --version), checkov $("$CHECKOV" --version)"
if [[ -z $LLMOPT_CHECK_BIN ]]; then
  echo "helm checks: no llmopt binary to check the rendered llmopt.toml with (set LLMOPT_BIN or build target/debug/llmopt)" >&2
  exit 1
fi
command -v promtool >/dev/null || { echo "helm checks: promtool missing (Debian package prometheus, scripts/system-packages.sh)" >&2; exit 1; }

render_and_check default "" "$CHECKOV_SKIP_DEFAULT"
render_and_check all-on "$CHART/ci/all-on-values.yaml" "$CHECKOV_SKIP_ALL_ON"

# Branches neither value set takes (the other side of each either/or), rendered and validated
# without checkov (whose findings do not depend on them).
variant() { # name, values on stdin
  mkdir -p "$WORK/variants"
  cat >"$WORK/variants/$1.yaml"
  render_and_check "variant-$1" "$WORK/variants/$1.yaml" no-checkov
}
variant chart-secrets-quantizer-emptydir <<'YAML'
kafka:
  securityProtocol: sasl_plaintext
  sasl: {mechanism: PLAIN, username: llmopt, password: not-a-real-password}
redis:
  auth: {enabled: true, password: not-a-real-password}
quantizer:
  enabled: true
  persistence: {enabled: false}
otel:
  enabled: true
  endpoint: http://otel-collector.example.com
networkPolicy:
  egress:
    - ports: [{port: 53, protocol: UDP}]
YAML
variant existing-claim-minimal <<'YAML'
fullnameOverride: lo
serviceAccount: {create: false}
networkPolicy: {enabled: false}
aggregator: {enabled: false}
detector: {enabled: false}
decision: {enabled: false}
quantizer:
  enabled: true
  persistence: {existingClaim: llm-artifacts, storageClass: "-"}
YAML

# Values the schema or the templates must refuse, each for the reason its `# expect:` line names.
# helm template (what install runs) must fail with that message; helm lint must fail too, except
# for files marked `# lint: warns`: template-logic checks (`fail`, `required`) that helm lint, by
# design, only logs - there its log must still carry the message.
bad_values_rejected() { # file
  local expect out
  expect=$(sed -n 's/^# expect: *//p' "$1")
  if [[ -z $expect ]]; then
    echo "$1 has no '# expect: <part of the error message>' line"
    return 1
  fi
  if out=$("$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$1" 2>&1); then
    echo "helm template accepted $1"
    return 1
  fi
  if ! grep -qF -- "$expect" <<<"$out"; then
    printf 'helm template failed, but not with "%s":\n%s\n' "$expect" "$out"
    return 1
  fi
  if grep -q '^# lint: warns' "$1"; then
    out=$("$HELM" lint --strict "$CHART" -f "$1" 2>&1)
    if ! grep -qF -- "$expect" <<<"$out"; then
      printf 'helm lint did not report "%s":\n%s\n' "$expect" "$out"
      return 1
    fi
  elif out=$("$HELM" lint --strict "$CHART" -f "$1" 2>&1); then
    echo "helm lint accepted $1"
    return 1
  fi
}
shopt -s nullglob
bad=("$CHART"/ci/bad-values-*.yaml)
if ((${#bad[@]} == 0)); then
  failed=$((failed + 1))
  log "FAIL  no $CHART/ci/bad-values-*.yaml"
fi
for f in "${bad[@]}"; do
  check "rejected: $(basename "$f")" bad_values_rejected "$f"
done

check "checkov Dockerfile" "$CHECKOV" --quiet --compact --skip-download \
  --framework dockerfile secrets -f Dockerfile

# checkov has no docker-compose framework: the compose file gets the real docker-compose parser
# and checkov's secrets scan.
if [[ -f docker-compose.yml ]]; then
  check "docker-compose config --quiet" "$COMPOSE_BIN" -f docker-compose.yml config --quiet
  check "checkov secrets scan (docker-compose.yml)" "$CHECKOV" --quiet --compact --skip-download \
    --framework secrets -f docker-compose.yml
else
  log "skip  docker-compose.yml: none at the repository root"
fi

echo "helm: $passed passed, $failed failed"
((failed == 0))
