//! OpenTelemetry export through a real OTLP receiver: ingest and aggregator processes export
//! their spans and metrics over OTLP/gRPC to rotel (an OpenTelemetry collector), which writes
//! them to Kafka as OTLP JSON. A telemetry event that arrives with an application's
//! `traceparent` must show up as one trace: the application's span → ingest's span → the
//! aggregator's span, linked across the Kafka hop.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::process::{free_port, read, wait_for, Installation};
use llmopt_events::samples;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{
    LogicalTopic, OutboundMessage, TopicNames, TopicSpec, Transport, TransportConfig,
};
use serde_json::Value;

/// The application's span that every test event claims as its parent.
const APP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN: &str = "00f067aa0ba902b7";

/// A receiver process, killed on drop.
struct Rotel(std::process::Child);

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every record of `topic`, read from the start until it has been quiet for a few polls.
async fn read_all(transport: &Arc<dyn Transport>, topic: &str) -> Vec<Vec<u8>> {
    let mut consumer = transport
        .subscribe(&common::unique("otlp-reader"), &[topic.to_string()])
        .await
        .expect("subscribe");
    let mut records = Vec::new();
    let mut empty = 0;
    while empty < 10 {
        match consumer
            .poll(Duration::from_millis(300))
            .await
            .expect("poll")
        {
            Some(m) => {
                empty = 0;
                records.push(m.value.unwrap_or_default());
            }
            None if consumer.assignment().expect("assignment").is_empty() => {}
            None => empty += 1,
        }
    }
    consumer.close().await.expect("close");
    records
}

/// A span as the test needs it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// Spans out of OTLP JSON records (each a JSON array of ResourceSpans, rotel's Kafka format).
fn spans(records: &[Vec<u8>]) -> Vec<Span> {
    let mut out = Vec::new();
    for record in records {
        let Ok(Value::Array(resource_spans)) = serde_json::from_slice::<Value>(record) else {
            panic!("not a JSON array: {}", String::from_utf8_lossy(record));
        };
        for rs in resource_spans {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let field = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                    out.push(Span {
                        service: service.clone(),
                        name: field("name"),
                        trace_id: field("traceId"),
                        span_id: field("spanId"),
                        parent_span_id: field("parentSpanId"),
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_two_services_are_linked_across_the_kafka_hop() {
    let rotel_bin = std::env::var("LLMOPT_ROTEL").unwrap_or_else(|_| {
        panic!("LLMOPT_ROTEL is not set: run the README's test command (scripts/test.sh), which installs rotel")
    });
    let install = Installation::new("otlp", "[transport]\npartitions = 2\n");
    let traces_topic = format!("{}otlp_traces", install.prefix);
    let metrics_topic = format!("{}otlp_metrics", install.prefix);
    let transport: Arc<dyn Transport> = Arc::new(
        KafkaTransport::new(&common::kafka_config(), "otlp-test").expect("kafka transport"),
    );
    let names = TopicNames::new(&TransportConfig {
        topic_prefix: install.prefix.clone(),
        partitions: 2,
        ..TransportConfig::default()
    });
    let mut specs = names.all_specs();
    for name in [&traces_topic, &metrics_topic] {
        specs.push(TopicSpec {
            name: name.clone(),
            partitions: 1,
        });
    }
    transport.ensure_topics(&specs).await.expect("topics");

    let grpc = free_port();
    let rotel_log = install.dir.join("rotel.log");
    let _rotel = Rotel(
        Command::new(&rotel_bin)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{}", free_port()),
                "--exporter",
                "kafka",
                "--kafka-exporter-brokers",
                &common::kafka_bootstrap(),
                "--kafka-exporter-format",
                "json",
                "--kafka-exporter-traces-topic",
                &traces_topic,
                "--kafka-exporter-metrics-topic",
                &metrics_topic,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&rotel_log).expect("log"))
            .spawn()
            .expect("start rotel-agent"),
    );
    wait_for("rotel's OTLP port", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&rotel_log)));

    let endpoint = format!("http://127.0.0.1:{grpc}");
    let otel_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("LLMOPT_TELEMETRY__METRICS_INTERVAL_S", "1"),
    ];
    let ingest = install.spawn_service("ingest", &otel_env);
    let aggregator = install.spawn_service("aggregator", &otel_env);
    ingest.wait_ready(Duration::from_secs(60));
    aggregator.wait_ready(Duration::from_secs(60));

    let raw = names.name(LogicalTopic::TelemetryRaw);
    let calls: Vec<OutboundMessage> = (0..20)
        .map(|n| {
            let call = samples::llm_call(n);
            let meta = EventMeta {
                id: format!("otlp-{n}"),
                source: "/apps/otlp".into(),
                time_ms: Some(call.event_time),
                partition_key: Some(format!("{}/{}", call.app, call.route)),
                traceparent: Some(format!("00-{APP_TRACE}-{APP_SPAN}-01")),
                ..EventMeta::default()
            };
            OutboundMessage::from(wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode"))
        })
        .collect();
    transport.publish_batch(&raw, calls).await.expect("publish");
    let telemetry = names.name(LogicalTopic::Telemetry);
    let consumed =
        format!("llmopt_events_in_total{{service=\"aggregator\",topic=\"{telemetry}\"}} 20");
    wait_for(
        "the aggregator to consume 20 events",
        Duration::from_secs(60),
        || aggregator.metrics().contains(&consumed),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&aggregator.log)));
    // Let one metrics export happen, then stop: shutdown flushes the span batches.
    std::thread::sleep(Duration::from_secs(2));
    ingest.stop();
    aggregator.stop();

    let mut spans_seen = Vec::new();
    for _ in 0..20 {
        spans_seen = spans(&read_all(&transport, &traces_topic).await);
        if spans_seen.iter().any(|s| s.service == "llmopt-aggregator") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let by_id: HashMap<&str, &Span> = spans_seen.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let ingest_spans: Vec<&Span> = spans_seen
        .iter()
        .filter(|s| s.service == "llmopt-ingest" && s.name.ends_with("process"))
        .collect();
    assert!(
        ingest_spans
            .iter()
            .any(|s| s.trace_id == APP_TRACE && s.parent_span_id == APP_SPAN),
        "ingest's span continues the application's trace: {spans_seen:#?}\nrotel: {}",
        read(&rotel_log)
    );
    let linked = spans_seen.iter().filter(|s| {
        s.service == "llmopt-aggregator"
            && s.name.ends_with("process")
            && s.trace_id == APP_TRACE
            && by_id
                .get(s.parent_span_id.as_str())
                .is_some_and(|parent| parent.service == "llmopt-ingest")
    });
    assert_eq!(
        linked.count(),
        20,
        "every aggregator span is the child of the ingest span that published its input: {spans_seen:#?}"
    );
    assert!(
        spans_seen
            .iter()
            .any(|s| s.service == "llmopt-ingest" && s.name == "state admit"),
        "state-store calls have spans"
    );
    assert!(
        spans_seen
            .iter()
            .any(|s| s.service == "llmopt-ingest" && s.name == "publish"),
        "publishing has spans"
    );

    let metrics = read_all(&transport, &metrics_topic).await;
    let text: String = metrics
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert!(
        text.contains("\"llmopt_events_in\"") && text.contains("llmopt-ingest"),
        "ingest's metrics arrive over OTLP: {}",
        &text[..text.len().min(2000)]
    );
}
