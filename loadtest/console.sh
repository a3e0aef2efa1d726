#!/usr/bin/env bash
# The console's overview on a large fleet: the API side (`llmopt bench console`) and the whole
# page in Debian's Chromium (tests/python/console_pageload.py), on the same synthetic view.
#   loadtest/console.sh [--routes 50] [--hours 24] [--loads 20]
# Prints two lines of figures; the goal is an overview loaded in <= 200 ms with 50 routes and
# 24 h of windows.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
routes=50 hours=24 loads=20
while (($#)); do
  case $1 in
    --routes) routes=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
llmopt_python_env
cargo build --release --locked --bin llmopt
port=$(free_port)
out=$(mktemp)
target/release/llmopt bench console --routes "$routes" --hours "$hours" --loads "$loads" \
  --serve "127.0.0.1:$port" >"$out" &
bench=$!
trap 'kill $bench 2>/dev/null || true; rm -f "$out"' EXIT
# The browser starts once the API side has been measured (not to share the CPU with it).
for _ in $(seq 600); do
  grep -q "console overview" "$out" && break
  kill -0 $bench 2>/dev/null || { echo "llmopt bench console failed" >&2; exit 1; }
  sleep 1
done
cat "$out"
"$LLMOPT_PYTHON" tests/python/console_pageload.py "http://127.0.0.1:$port" "$routes" "$loads"
