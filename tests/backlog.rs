//! Chaos suite, backlog: everything produced first, then the aggregator started on Kafka. Its
//! consumer reads six partitions in whatever fetch batches librdkafka makes, one partition's
//! event time racing hours ahead of another's; the runner reports which partitions are behind,
//! so the windows are the live run's and no on-time event is late.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{AnyEvent, CallStatus, LlmCall, WindowAggregate};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{shutdown, Input, NoEffects, Output, Processor};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PARTITIONS: i32 = 6;
const KEYS: usize = 12;
/// A call every 432 ms of event time on each of 12 keys for 2 hours: 200,000 calls.
const CALLS: usize = 200_000;
const SPACING_MS: i64 = 432;

fn calls() -> Vec<(String, LlmCall)> {
    let start = 1_767_225_600_000;
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    (0..CALLS)
        .map(|i| {
            let key = i % KEYS;
            let slot = (i / KEYS) as i64;
            // Out of order by up to 2 s, within the 5 s the aggregator allows.
            let t = start + slot * SPACING_MS * KEYS as i64 + rng.gen_range(0..2_000);
            let call = LlmCall {
                event_time: t,
                request_id: format!("req-{i}"),
                app: format!("app-{key}"),
                route: "answer".to_string(),
                tenant: None,
                gen_ai_operation_name: "chat".to_string(),
                gen_ai_provider_name: "openai".to_string(),
                gen_ai_request_model: "gpt-4o".to_string(),
                gen_ai_response_model: None,
                gen_ai_usage_input_tokens: 100,
                gen_ai_usage_output_tokens: rng.gen_range(1..400),
                latency_ms: rng.gen_range(50.0..900.0),
                time_to_first_token_ms: None,
                status: if rng.gen_bool(0.02) {
                    CallStatus::Error
                } else {
                    CallStatus::Ok
                },
                error_type: None,
                cost_usd: Some(0.001),
                quality_score: None,
                config_version: None,
            };
            (format!("call-{i}"), call)
        })
        .collect()
}

/// Final content of each window (latest revision, emission watermark left out).
fn window_contents(
    events: impl IntoIterator<Item = AnyEvent>,
) -> BTreeMap<String, WindowAggregate> {
    let mut windows = BTreeMap::new();
    for event in events {
        if let AnyEvent::WindowAggregate(mut w) = event {
            w.watermark = 0;
            windows.insert(w.window_id.clone(), w);
        }
    }
    windows
}

/// What the aggregator emits when every call arrives as it is produced.
fn live(calls: &[(String, LlmCall)]) -> (BTreeMap<String, WindowAggregate>, usize) {
    let mut core = Aggregator::new(AggregatorConfig::default()).expect("config");
    let mut outputs: Vec<Output> = Vec::new();
    for (id, call) in calls {
        outputs.extend(core.process(&Input {
            topic: LogicalTopic::Telemetry,
            partition: 0,
            offset: 0,
            id: id.clone(),
            source: "llmopt/ingest".into(),
            time_ms: Some(call.event_time),
            event: AnyEvent::LlmCall(call.clone()),
        }));
    }
    let late = outputs
        .iter()
        .filter(|o| o.topic == LogicalTopic::TelemetryLate)
        .count();
    (window_contents(outputs.into_iter().map(|o| o.event)), late)
}

/// Every event on `topic`, read until the topic is quiet.
async fn read_all(transport: &dyn Transport, topic: &str) -> Vec<AnyEvent> {
    let mut consumer = transport
        .subscribe(&common::unique("reader"), &[topic.to_string()])
        .await
        .expect("subscribe");
    let registry = llmopt_events::SchemaRegistry::current();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while quiet < 10 && Instant::now() < deadline {
        match consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            Some(m) => {
                quiet = 0;
                let record = llmopt_cloudevents::KafkaMessage {
                    key: m.key,
                    headers: m.headers,
                    value: m.value,
                };
                let (ce, _) =
                    llmopt_cloudevents::decode(&record, &Default::default()).expect("cloudevent");
                events.push(AnyEvent::from_cloudevent(&ce, &registry).expect("event"));
            }
            None if consumer.assignment().expect("assignment").is_empty() => {}
            None => quiet += 1,
        }
    }
    consumer.close().await.expect("close");
    events
}

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
    for chunk in calls.chunks(20_000) {
        let messages = chunk
            .iter()
            .map(|(id, call)| {
                let meta = EventMeta {
                    id: id.clone(),
                    source: "llmopt/ingest".into(),
                    time_ms: Some(call.event_time),
                    partition_key: Some(format!("{}/{}", call.app, call.route)),
                    ..EventMeta::default()
                };
                let mut m = OutboundMessage::from(
                    wire::to_kafka(call, &meta, DataFormat::Avro).expect("encode"),
                );
                m.timestamp_ms = Some(call.event_time);
                m
            })
            .collect();
        transport
            .publish_batch(&topic, messages)
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
