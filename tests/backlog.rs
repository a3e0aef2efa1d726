//! Chaos suite, backlog: everything produced first, then the aggregator started on Kafka. Its
//! consumer reads six partitions in whatever fetch batches librdkafka makes, one partition's
//! event time racing hours ahead of another's; the runner reports which partitions are behind,
//! so the windows are the live run's and no on-time event is late.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::windows::{calls, live, read_all, records, window_contents, CALLS, KEYS, PARTITIONS};
use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{shutdown, NoEffects};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, TopicNames, Transport, TransportConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_six_partitions_gives_the_live_windows_with_nothing_late() {
    let calls = calls();
    let (expected, live_late) = live(&calls);
    assert_eq!(live_late, 0, "the reference run has no late events");
    assert!(
        expected.len() > KEYS * 2 * 100,
        "{} windows",
        expected.len()
    );

    let config = TransportConfig {
        topic_prefix: format!("{}.", common::unique("backlog")),
        partitions: PARTITIONS,
        kafka: common::kafka_config(),
        ..TransportConfig::default()
    };
    let names = TopicNames::new(&config);
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&config.kafka, "backlog-test").expect("transport"));
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");

    // The backlog: two hours of telemetry, written before the aggregator starts.
    let topic = names.name(LogicalTopic::Telemetry);
    let backlog = records(&calls);
    for chunk in backlog.chunks(20_000) {
        transport
            .publish_batch(&topic, chunk.to_vec())
            .await
            .expect("publish backlog");
    }

    let started = Instant::now();
    let runner = Runner::new(
        Aggregator::new(AggregatorConfig::default()).expect("aggregator"),
        NoEffects,
        transport.clone(),
        names.clone(),
        Arc::new(ServiceMetrics::new("aggregator")),
        Arc::new(Health::new()),
        RunnerConfig {
            stop_after_idle_polls: Some(10),
            ..RunnerConfig::default()
        },
    );
    let (_stop, signal) = shutdown::channel();
    let (_, summary) = runner.run(signal).await.expect("aggregator run");
    assert_eq!(summary.consumed, CALLS as u64);
    eprintln!(
        "aggregated a backlog of {CALLS} calls over {PARTITIONS} partitions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let late = read_all(transport.as_ref(), &names.name(LogicalTopic::TelemetryLate)).await;
    assert_eq!(late.len(), 0, "on-time events sent to the late topic");
    let actual =
        window_contents(read_all(transport.as_ref(), &names.name(LogicalTopic::Windows)).await);
    assert_eq!(actual.len(), expected.len(), "window count");
    for (id, window) in &expected {
        assert_eq!(actual.get(id), Some(window), "window {id}");
    }
}
