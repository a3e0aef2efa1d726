#!/usr/bin/env bash
# Starts a broker (unless LLMOPT_KAFKA_BOOTSTRAP is set) and runs a load test.
#   loadtest/run.sh [transport] [--events N] [--partitions P]
#       the Kafka transport vs a bare rdkafka consumer, same topic
#   loadtest/run.sh pipeline [--duration SIM_SECONDS] [--partitions P]
#       llmopt loadgen → ingest → aggregator as processes (also starts or finds Redis) vs a bare
#       rdkafka consume of the same raw topic
#   loadtest/run.sh backlog [--duration SIM_SECONDS] [--partitions P] [--state redis|embedded]
#       loadgen fills the raw topic, then ingest alone on it and the aggregator alone on ingest's
#       output, each timed against a bare rdkafka consume of the same topic (ratios)
#   loadtest/run.sh memory [--series 10000,100000] [--calls 20]
#       RSS per active key-window of the aggregator core (no servers)
#   loadtest/run.sh restart [--base SIM_SECONDS] [--factors 1,10,100]
#       seconds from a restart of each stateful service to /ready against history (also Redis)
#   loadtest/run.sh chaos [--duration SIM_SECONDS] [--rounds N] [--seed S]
#       the loop in lock-step twice, uninterrupted and with every service killed -9 in N rounds
#       and Redis restarted; every record of every topic compared (starts its own Redis)
#   loadtest/run.sh scale [--duration SIM_SECONDS] [--rate EVENTS_PER_S] [--instances N]
#       ingest and the aggregator as processes, once with one aggregator and once with N
#       (one killed -9 for good at 1/3, one added at 2/3); every window compared, nothing late
#   loadtest/run.sh otlp [--calls N] [--batch SPANS] [--clients C]
#       spans/s through ingest's OTLP/HTTP receiver into Kafka vs the CloudEvents producer path
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap llmopt_services_down EXIT
mode=transport
if [[ ${1:-} =~ ^(transport|pipeline|backlog|memory|restart|chaos|scale|otlp)$ ]]; then mode=$1; shift; fi
if [[ $mode == memory ]]; then
  exec cargo run --release --locked -p llmopt-loadtest -- memory "$@"
fi
llmopt_python_env
llmopt_broker_up
if [[ $mode == otlp ]]; then
  cargo run --release --locked -p llmopt-loadtest -- otlp "$@"
elif [[ $mode != transport ]]; then
  llmopt_redis_up
  cargo build --release --locked --bin llmopt
  cargo run --release --locked -p llmopt-loadtest -- "$mode" --llmopt target/release/llmopt "$@"
else
  cargo run --release --locked -p llmopt-loadtest -- transport "$@"
fi
