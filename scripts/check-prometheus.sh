#!/usr/bin/env bash
# Checks the monitoring files: the Prometheus rules and their unit tests, the Grafana dashboard's
# PromQL, and the docker-compose Prometheus config. Needs promtool (Debian package `prometheus`)
# and python3 with PyYAML ($PYTHON; scripts/test.sh passes target/deployenv's).
#
#   scripts/check-prometheus.sh            # PROMTOOL=/path/to/promtool to pick another promtool
set -euo pipefail
cd "$(dirname "$0")/.."

PROMTOOL=${PROMTOOL:-promtool}
PYTHON=${PYTHON:-python3}
RULES_DIR=helm/llmopt/files/prometheus
RULES=$RULES_DIR/rules.yml
RULES_TEST=$RULES_DIR/rules_test.yml
DASHBOARD=helm/llmopt/files/grafana/llmopt.json
PROM_CONFIG=deploy/prometheus/prometheus.yml
RUNBOOK=docs/operations.md
# Where compose mounts $RULES_DIR; the config's rule_files point there.
RULES_MOUNT=/etc/prometheus/rules

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
  echo "check-prometheus: promtool not found (PROMTOOL=$PROMTOOL);" \
    "install Debian's 'prometheus' package or set PROMTOOL" >&2
  exit 2
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "check-prometheus: $PYTHON not found (set PYTHON)" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0
check() { # name command...: runs one check, prints its output only when it fails
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$tmp/out"
  fi
}

# The metrics the services export (the contract with the Rust side). Recording rules
# (names with a colon) are checked against rules.yml instead.
KNOWN_METRICS="up
llmopt_events_in_total
llmopt_events_out_total
llmopt_dead_letters_total
llmopt_duplicates_total
llmopt_processing_seconds_bucket
llmopt_processing_seconds_sum
llmopt_processing_seconds_count
llmopt_consumer_lag
llmopt_ready
llmopt_consumer_idle
llmopt_leader
llmopt_route_window_calls
llmopt_route_window_errors
llmopt_route_window_cost_usd
llmopt_route_window_latency_p95_seconds
llmopt_route_window_quality_mean
llmopt_route_window_end_timestamp_seconds"
export KNOWN_METRICS

# ---------------------------------------------------------------------------------- rules
check "promtool check rules $RULES" "$PROMTOOL" check rules --lint=all --lint-fatal "$RULES"
check "promtool test rules $RULES_TEST" "$PROMTOOL" test rules "$RULES_TEST"

# Every alert has for/severity/summary/description/runbook_url, a runbook section in
# docs/operations.md, a firing test and a quiet test; every recording rule has a test; every
# metric a rule reads is one the services export or one recorded here.
rule_metadata() {
  "$PYTHON" - "$RULES" "$RULES_TEST" "$RUNBOOK" <<'EOF'
import os, re, sys, yaml

rules_path, tests_path, runbook_path = sys.argv[1:4]
known = set(os.environ["KNOWN_METRICS"].split())
rules = yaml.safe_load(open(rules_path))
tests = yaml.safe_load(open(tests_path))
errors = []

def anchor(heading):  # GitHub's heading anchors
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")

anchors = {anchor(line.lstrip("#")) for line in open(runbook_path) if re.match(r"#{1,6} ", line)}

def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # drop strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # drop matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"(?<![\w:])(llmopt[\w:]*|up)(?![\w:(])", expr))

alerts, records, groups = {}, {}, set()
for group in rules["groups"]:
    if group["name"] in groups:
        errors.append(f"group {group['name']} is defined twice")
    groups.add(group["name"])
    for rule in group["rules"]:
        if "alert" in rule:
            if rule["alert"] in alerts:
                errors.append(f"alert {rule['alert']} is defined twice")
            alerts[rule["alert"]] = rule
        else:
            if rule["record"] in records:
                errors.append(f"recording rule {rule['record']} is defined twice")
            records[rule["record"]] = rule

for name, rule in alerts.items():
    if not rule.get("for"):
        errors.append(f"alert {name}: no `for`")
    if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
        errors.append(f"alert {name}: labels.severity must be critical, warning or info")
    ann = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            errors.append(f"alert {name}: no annotations.{key}")
    url = ann.get("runbook_url", "")
    if not url.endswith(f"docs/operations.md#{name.lower()}"):
        errors.append(f"alert {name}: runbook_url must end with docs/operations.md#{name.lower()}")
    if name.lower() not in anchors:
        errors.append(f"alert {name}: {runbook_path} has no section `## {name}`")

for name, rule in {**alerts, **records}.items():
    for metric in metric_names(rule["expr"]):
        if metric not in known and metric not in records:
            errors.append(f"rule {name}: reads {metric}, which is neither exported nor recorded")

fires, quiet, tested = set(), set(), set()
for test in tests.get("tests", []):
    for t in test.get("alert_rule_test", []) or []:
        (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
    for t in test.get("promql_expr_test", []) or []:
        if t.get("exp_samples"):
            tested.update(metric_names(t["expr"]))
for name in alerts:
    if name not in fires:
        errors.append(f"alert {name}: no test where it fires")
    if name not in quiet:
        errors.append(f"alert {name}: no test where it stays quiet")
for name in set(fires | quiet) - set(alerts):
    errors.append(f"tests name alert {name}, which rules.yml does not define")
for name in records:
    if name not in tested:
        errors.append(f"recording rule {name}: no promql_expr_test with expected samples")

for e in errors:
    print(e)
print(f"{len(alerts)} alerts, {len(records)} recording rules")
sys.exit(1 if errors else 0)
EOF
}
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
  echo "PyYAML is missing for $PYTHON: set PYTHON to an interpreter with it (scripts/test.sh uses target/deployenv)" >&2
  exit 2
fi
check "rule metadata, runbook anchors and test coverage" rule_metadata

# ------------------------------------------------------------------------------ dashboard
# Every PromQL expression of the dashboard (panel targets, and the metric selectors of
# label_values() variables) becomes a recording rule in a temporary file for promtool, with
# Grafana's variables replaced by concrete values. Structure checks on the way: the datasource is
# the ${datasource} variable everywhere, every metric is exported or recorded.
dashboard_extract() {
  "$PYTHON" - "$DASHBOARD" "$RULES" "$tmp/dashboard_rules.yml" <<'EOF'
import json, os, re, sys

dash_path, rules_path, out_path = sys.argv[1:4]
known = set(os.environ["KNOWN_METRICS"].split())
records = set(re.findall(r"^\s*-?\s*record:\s*(\S+)", open(rules_path).read(), re.M))
dash = json.load(open(dash_path))
errors = []

BUILTIN = {  # Grafana's global variables, as durations or numbers
    "__rate_interval": "1m", "__interval": "30s", "__interval_ms": "30000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
}
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
for name in ("datasource", "service", "app", "route"):
    if name not in variables:
        errors.append(f"template variable ${name} is missing")
if variables.get("datasource", {}).get("type") != "datasource" or \
        variables.get("datasource", {}).get("query") != "prometheus":
    errors.append("$datasource must be a datasource variable of type prometheus")
if not 36 <= dash.get("schemaVersion", 0) <= 41:
    errors.append(f"schemaVersion {dash.get('schemaVersion')} is not ~39")

def substitute(expr, where):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTIN:
            return BUILTIN[name]
        if name in variables and name != "datasource":
            return "x"
        errors.append(f"{where}: unknown variable {m.group(0)}")
        return m.group(0)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)

def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"(?<![\w:])(llmopt[\w:]*|up)(?![\w:(])", expr))

exprs = []
def add(expr, where):
    for metric in metric_names(expr):
        if metric not in known and metric not in records:
            errors.append(f"{where}: {metric} is neither exported nor recorded in {rules_path}")
    exprs.append((where, substitute(expr, where)))

for name, v in variables.items():
    if v.get("type") != "query":
        continue
    if v.get("datasource", {}).get("uid") != "${datasource}":
        errors.append(f"variable ${name}: datasource is not ${{datasource}}")
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q) or \
        re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
    if not m:
        errors.append(f"variable ${name}: query {q!r} is not label_values(...) or query_result(...)")
    else:
        add(m.group(1), f"variable ${name}")

def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))

ids, count = set(), 0
for p in panels(dash.get("panels", [])):
    title = p.get("title", "?")
    if p.get("id") in ids:
        errors.append(f"panel {title!r}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    if "gridPos" not in p:
        errors.append(f"panel {title!r}: no gridPos")
    if p.get("type") == "row":
        continue
    count += 1
    if p.get("datasource", {}).get("uid") != "${datasource}":
        errors.append(f"panel {title!r}: datasource is not ${{datasource}}")
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"panel {title!r}: no targets")
    for t in targets:
        where = f"panel {title!r} target {t.get('refId')}"
        if t.get("datasource", {}).get("uid") not in (None, "${datasource}"):
            errors.append(f"{where}: datasource is not ${{datasource}}")
        if not t.get("expr", "").strip():
            errors.append(f"{where}: no expr")
            continue
        add(t["expr"], where)

with open(out_path, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, expr) in enumerate(exprs):
        f.write(f"      # {where}\n      - record: dashboard:expr_{i}\n        expr: {json.dumps(expr)}\n")
for e in errors:
    print(e)
print(f"{count} panels, {len(exprs)} expressions")
sys.exit(1 if errors else 0)
EOF
}
check "dashboard structure and PromQL extraction ($DASHBOARD)" dashboard_extract
if [[ -s $tmp/dashboard_rules.yml ]]; then
  # Panels may repeat an expression, so no duplicate-rules lint here.
  check "promtool check rules on the dashboard's PromQL" \
    "$PROMTOOL" check rules --lint=none "$tmp/dashboard_rules.yml"
else
  failed=$((failed + 1))
  echo "FAIL  promtool check rules on the dashboard's PromQL (nothing extracted)"
fi

# ------------------------------------------------------------------------ compose config
# The config names the rules where compose mounts them; check it against a copy of that layout.
prom_config() {
  mkdir -p "$tmp/layout/rules"
  cp "$RULES_DIR"/*.yml "$tmp/layout/rules/"
  if ! grep -q "$RULES_MOUNT/rules.yml" "$PROM_CONFIG"; then
    echo "$PROM_CONFIG does not load $RULES_MOUNT/rules.yml"
    return 1
  fi
  sed "s#$RULES_MOUNT/#$tmp/layout/rules/#g" "$PROM_CONFIG" >"$tmp/layout/prometheus.yml"
  "$PROMTOOL" check config --lint=all --lint-fatal "$tmp/layout/prometheus.yml"
}
check "promtool check config $PROM_CONFIG" prom_config

if ((skipped > 0)); then
  echo "prometheus: $passed passed, $failed failed, $skipped skipped"
else
  echo "prometheus: $passed passed, $failed failed"
fi
((failed == 0))
