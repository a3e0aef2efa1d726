//! The runner's output encoding: alerts are JSON an operator can read with any Kafka consumer,
//! everything else Avro; ids, keys and traceparent come through.

use std::sync::Arc;
use std::time::Duration;

use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, AnyEvent};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{shutdown, Input, NoEffects, Output, Processor};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

/// Turns every window into one alert and one anomaly.
struct Alerting;

impl Processor for Alerting {
    fn name(&self) -> &'static str {
        "alerting"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Windows]
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        vec![
            Output {
                topic: LogicalTopic::Alerts,
                id: format!("alert-{}", input.id),
                key: "dedup".into(),
                time_ms: 1,
                event: AnyEvent::Alert(samples::alert()),
            },
            Output {
                topic: LogicalTopic::Anomalies,
                id: format!("anomaly-{}", input.id),
                key: "checkout/summarize".into(),
                time_ms: 1,
                event: AnyEvent::Anomaly(samples::anomaly()),
            },
        ]
    }
}

fn header<'a>(headers: &'a [(String, Option<Vec<u8>>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[tokio::test]
async fn alerts_are_json_other_outputs_avro_with_ids_keys_and_trace() {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(1));
    let names = TopicNames::new(&TransportConfig::default());
    let window = samples::window_aggregate();
    let meta = EventMeta {
        id: "w1".into(),
        source: "llmopt/aggregator".into(),
        time_ms: Some(window.window_end),
        partition_key: Some("checkout/summarize".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        subject: None,
    };
    let m = wire::to_kafka(&window, &meta, DataFormat::Avro).expect("encode");
    transport
        .publish(&names.name(LogicalTopic::Windows), OutboundMessage::from(m))
        .await
        .expect("publish");
    let runner = Runner::new(
        Alerting,
        NoEffects,
        transport.clone(),
        names.clone(),
        Arc::new(ServiceMetrics::new("alerting")),
        Arc::new(Health::new()),
        RunnerConfig {
            stop_after_idle_polls: Some(3),
            poll_timeout: Duration::from_millis(10),
            ..RunnerConfig::default()
        },
    );
    let (_t, stop) = shutdown::channel();
    let (_, summary) = runner.run(stop).await.expect("run");
    assert_eq!((summary.consumed, summary.published), (1, 2));

    let topics = [
        names.name(LogicalTopic::Alerts),
        names.name(LogicalTopic::Anomalies),
    ];
    let mut consumer = transport
        .subscribe("reader", &topics)
        .await
        .expect("subscribe");
    let mut seen = 0;
    while let Some(m) = consumer
        .poll(Duration::from_millis(20))
        .await
        .expect("poll")
    {
        seen += 1;
        assert_eq!(
            header(&m.headers, "ce_traceparent"),
            meta.traceparent.as_deref()
        );
        assert_eq!(header(&m.headers, "ce_source"), Some("llmopt/alerting"));
        if m.topic == topics[0] {
            assert_eq!(header(&m.headers, "content-type"), Some("application/json"));
            assert_eq!(header(&m.headers, "ce_id"), Some("alert-w1"));
            assert_eq!(m.key.as_deref(), Some(&b"dedup"[..]));
            // Plain JSON: any consumer can read it without llmopt's schemas.
            let alert: serde_json::Value =
                serde_json::from_slice(m.value.as_deref().unwrap_or_default()).expect("JSON alert");
            assert_eq!(alert["alertname"], "ErrorRateHigh");
            assert_eq!(alert["status"], "FIRING");
            assert_eq!(alert["severity"], "CRITICAL");
        } else {
            assert_eq!(header(&m.headers, "content-type"), Some("application/avro"));
            assert_eq!(m.value.as_deref().map(|v| &v[..2]), Some(&[0xC3, 0x01][..]));
        }
    }
    assert_eq!(seen, 2);
}

/// A core with one state across all its inputs, like the detector's.
struct WholeState;

impl Processor for WholeState {
    fn name(&self) -> &'static str {
        "whole"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Windows]
    }

    fn process(&mut self, _input: &Input) -> Vec<Output> {
        Vec::new()
    }

    fn state_scope(&self) -> llmopt_runtime::StateScope {
        llmopt_runtime::StateScope::Whole
    }
}

/// Without checkpoints there is no lease, and the one instance consumes for its group:
/// `llmopt_leader` is 1 (the alert on a group nobody leads reads it), and 0 for a core whose
/// instances share the group.
#[tokio::test]
async fn a_single_instance_core_without_checkpoints_reports_itself_the_leader() {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(1));
    let names = TopicNames::new(&TransportConfig::default());
    let config = RunnerConfig {
        stop_after_idle_polls: Some(2),
        poll_timeout: Duration::from_millis(10),
        ..RunnerConfig::default()
    };
    let whole_metrics = Arc::new(ServiceMetrics::new("whole"));
    let runner = Runner::new(
        WholeState,
        NoEffects,
        transport.clone(),
        names.clone(),
        whole_metrics.clone(),
        Arc::new(Health::new()),
        config.clone(),
    );
    let (_t, stop) = shutdown::channel();
    runner.run(stop).await.expect("run");
    assert_eq!(whole_metrics.leading.get(), 1);

    let shared_metrics = Arc::new(ServiceMetrics::new("alerting"));
    let runner = Runner::new(
        Alerting,
        NoEffects,
        transport,
        names,
        shared_metrics.clone(),
        Arc::new(Health::new()),
        config,
    );
    let (_t, stop) = shutdown::channel();
    runner.run(stop).await.expect("run");
    assert_eq!(shared_metrics.leading.get(), 0);
}
