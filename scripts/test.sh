#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up the pinned Python test packages, starts a
# Kafka-protocol broker (tansu) and Redis unless LLMOPT_KAFKA_BOOTSTRAP / LLMOPT_REDIS_URL point
# at running ones, runs format and lint checks and every test, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap llmopt_services_down EXIT

llmopt_python_env
llmopt_broker_up
llmopt_redis_up
log "kafka=$LLMOPT_KAFKA_BOOTSTRAP redis=$LLMOPT_REDIS_URL python=$LLMOPT_PYTHON"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
