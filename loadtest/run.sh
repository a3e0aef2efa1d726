#!/usr/bin/env bash
# Starts a broker (unless LLMOPT_KAFKA_BOOTSTRAP is set) and runs the transport load test.
#   loadtest/run.sh [--events N] [--partitions P]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap llmopt_services_down EXIT
llmopt_python_env
llmopt_broker_up
cargo run --release --locked -p llmopt-loadtest -- transport "$@"
