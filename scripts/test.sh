#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned Debian packages and Python test
# and deployment tools, starts a Kafka-protocol broker (tansu) and Redis unless
# LLMOPT_KAFKA_BOOTSTRAP / LLMOPT_REDIS_URL point at running ones, runs format and lint checks,
# the Prometheus rule tests, every Rust test, and then the deployment checks that need the built
# binary: the Helm chart (lint, schemas, checkov), the container image and the docker-compose stack
# run with podman, and the rendered chart run with `podman kube play`. Stops what it started.
#
# With arguments, only `cargo test ARGS` runs after the lint (a developer's quick loop).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/system-packages.sh
source scripts/deploy-tools.sh
trap llmopt_services_down EXIT

started=$SECONDS
step() { log "[$((SECONDS - started)) s] $*"; }

llmopt_system_packages
llmopt_python_env
llmopt_deploy_tools
llmopt_broker_up
llmopt_redis_up
export PROMTOOL=${PROMTOOL:-promtool}
log "kafka=$LLMOPT_KAFKA_BOOTSTRAP redis=$LLMOPT_REDIS_URL python=$LLMOPT_PYTHON"

step "format and lint"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if (($# > 0)); then
  cargo test --workspace --locked "$@"
  exit
fi

step "Prometheus rules, rule tests and dashboard queries"
PYTHON=$LLMOPT_DEPLOY_PYTHON scripts/check-prometheus.sh

step "Rust tests"
cargo test --workspace --locked

# The deployment checks run the binary the tests just built (the test profile: dependencies
# optimised, see Cargo.toml), so CI compiles once.
export LLMOPT_BIN=$PWD/target/debug/llmopt
step "Helm chart"
scripts/check-helm.sh
step "container image and docker-compose stack"
scripts/check-compose.sh "$LLMOPT_BIN"
step "rendered chart under podman kube play"
scripts/check-kube-play.sh "$LLMOPT_BIN"
step "done"
