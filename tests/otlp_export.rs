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

/// Decoded `LlmCall`s on an installation's `telemetry` topic, by request id.
async fn calls_on_telemetry(
    transport: &Arc<dyn Transport>,
    names: &TopicNames,
) -> std::collections::BTreeMap<String, llmopt_events::LlmCall> {
    common::windows::read_all(transport.as_ref(), &names.name(LogicalTopic::Telemetry))
        .await
        .into_iter()
        .map(|event| match event {
            llmopt_events::AnyEvent::LlmCall(call) => (call.request_id.clone(), call),
            other => panic!("not an LlmCall: {other:?}"),
        })
        .collect()
}

/// A rotel collector receiving OTLP/HTTP on a free port and writing traces to `topic` in
/// `format` (`protobuf` or `json`); returns it and its OTLP/HTTP port.
fn rotel_to_kafka(
    rotel_bin: &str,
    format: &str,
    topic: &str,
    log: &std::path::Path,
) -> (Rotel, u16) {
    let http = free_port();
    let rotel = Rotel(
        Command::new(rotel_bin)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{}", free_port()),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--exporter",
                "kafka",
                "--kafka-exporter-brokers",
                &common::kafka_bootstrap(),
                "--kafka-exporter-format",
                format,
                "--kafka-exporter-traces-topic",
                topic,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start rotel-agent"),
    );
    wait_for("rotel's OTLP/HTTP port", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", read(log)));
    (rotel, http)
}

/// One HTTP/1.1 POST of an OTLP protobuf body; returns the status.
fn post_protobuf(port: u16, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// GenAI spans exported to rotel, whose Kafka exporter writes them to a topic (protobuf from
/// one rotel, JSON from another), read by ingest's collector-topic bridge: the same calls as the
/// same spans exported straight to ingest's OTLP/HTTP receiver in another installation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_spans_through_a_collectors_kafka_topics_are_the_calls_of_the_direct_path() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        status::StatusCode, ResourceSpans, ScopeSpans, Status,
    };
    use prost::Message;

    let rotel_bin = std::env::var("LLMOPT_ROTEL").unwrap_or_else(|_| {
        panic!("LLMOPT_ROTEL is not set: run the README's test command (scripts/test.sh), which installs rotel")
    });
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let text = |k: &str, v: &str| kv(k, Value::StringValue(v.into()));
    let export = |first: u8| {
        let spans = (first..first + 3)
            .map(|n| {
                let start = 1_767_225_600_000_000_000 + u64::from(n) * 1_000_000_000;
                let mut attributes = vec![
                    text("gen_ai.operation.name", "chat"),
                    text("gen_ai.provider.name", "openai"),
                    text("gen_ai.request.model", "gpt-4o-mini"),
                    text("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    kv(
                        "gen_ai.usage.input_tokens",
                        Value::IntValue(100 + i64::from(n)),
                    ),
                    kv("gen_ai.usage.output_tokens", Value::IntValue(20)),
                    text("llmopt.route", "order-summary"),
                    text("enduser.id", "acme"),
                ];
                let mut status = None;
                if n % 3 == 0 {
                    attributes.push(text("error.type", "rate_limited"));
                    status = Some(Status {
                        code: StatusCode::Error as i32,
                        message: "429".into(),
                    });
                }
                opentelemetry_proto::tonic::trace::v1::Span {
                    trace_id: vec![9; 16],
                    span_id: vec![8, 7, 6, 5, 4, 3, 2, n],
                    name: "chat gpt-4o-mini".into(),
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 300_000_000 + u64::from(n) * 1_000_000,
                    attributes,
                    status,
                    ..Default::default()
                }
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "checkout")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let (protobuf_export, json_export) = (export(1), export(4));

    let direct_otlp = free_port();
    let direct = Installation::new(
        "otlp-direct",
        &format!("[ingest.otlp]\nlisten = \"127.0.0.1:{direct_otlp}\"\n"),
    );
    let topics = |prefix: &str| {
        (
            format!("{prefix}collector_pb"),
            format!("{prefix}collector_json"),
        )
    };
    let (pb_topic, json_topic) = topics(&common::unique("otlpc"));
    let bridged = Installation::new(
        "otlp-bridged",
        &format!(
            "[[ingest.otlp.kafka_topics]]\ntopic = \"{pb_topic}\"\nformat = \"protobuf\"\n\n\
             [[ingest.otlp.kafka_topics]]\ntopic = \"{json_topic}\"\nformat = \"json\"\n"
        ),
    );
    let transport: Arc<dyn Transport> = Arc::new(
        KafkaTransport::new(&common::kafka_config(), "otlp-collector-test").expect("kafka"),
    );
    let names = |install: &Installation| {
        TopicNames::new(&TransportConfig {
            topic_prefix: install.prefix.clone(),
            partitions: 6,
            ..TransportConfig::default()
        })
    };
    let mut specs = names(&bridged).all_specs();
    specs.extend(names(&direct).all_specs());
    for topic in [&pb_topic, &json_topic] {
        specs.push(TopicSpec {
            name: topic.clone(),
            partitions: 1,
        });
    }
    transport.ensure_topics(&specs).await.expect("topics");

    let mut rotels = Vec::new();
    let mut rotel_ports = Vec::new();
    for (format, topic) in [("protobuf", &pb_topic), ("json", &json_topic)] {
        let log = bridged.dir.join(format!("rotel-{format}.log"));
        let (rotel, port) = rotel_to_kafka(&rotel_bin, format, topic, &log);
        rotels.push(rotel);
        rotel_ports.push(port);
    }
    let direct_ingest = direct.spawn_service("ingest", &[]);
    let bridged_ingest = bridged.spawn_service("ingest", &[]);
    direct_ingest.wait_ready(Duration::from_secs(60));
    bridged_ingest.wait_ready(Duration::from_secs(60));

    assert_eq!(post_protobuf(direct_otlp, &protobuf_export), 200);
    assert_eq!(post_protobuf(direct_otlp, &json_export), 200);
    assert_eq!(post_protobuf(rotel_ports[0], &protobuf_export), 200);
    assert_eq!(post_protobuf(rotel_ports[1], &json_export), 200);
    // A record on a collector topic that is not OTLP: dead-lettered, nothing lost or stuck.
    transport
        .publish(
            &pb_topic,
            OutboundMessage {
                key: None,
                value: Some(b"not an export".to_vec()),
                headers: Vec::new(),
                timestamp_ms: None,
            },
        )
        .await
        .expect("publish garbage");

    let out = |install: &Installation| {
        format!(
            "llmopt_events_out_total{{service=\"ingest\",topic=\"{}\"}} 6\n",
            names(install).name(LogicalTopic::Telemetry)
        )
    };
    for (process, install) in [(&direct_ingest, &direct), (&bridged_ingest, &bridged)] {
        wait_for("6 calls on telemetry", Duration::from_secs(60), || {
            process.metrics().contains(&out(install))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", process.metrics(), read(&process.log)));
    }
    let undecodable = "\nllmopt_otlp_spans_total{outcome=\"undecodable\"} 1\n";
    wait_for(
        "the garbage record dead-lettered",
        Duration::from_secs(30),
        || bridged_ingest.metrics().contains(undecodable),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", bridged_ingest.metrics()));
    let via_collector = bridged_ingest.metrics();
    assert!(
        via_collector.contains("\nllmopt_otlp_spans_total{outcome=\"accepted\"} 6\n"),
        "{via_collector}"
    );
    let dead = llmopt_transport::read_topic(
        transport.as_ref(),
        &names(&bridged).name(LogicalTopic::DeadLetter),
        "dlq",
    )
    .await
    .expect("dead letters");
    assert_eq!(dead.len(), 1);
    direct_ingest.stop();
    bridged_ingest.stop();

    let direct_calls = calls_on_telemetry(&transport, &names(&direct)).await;
    let bridged_calls = calls_on_telemetry(&transport, &names(&bridged)).await;
    assert_eq!(direct_calls.len(), 6);
    assert_eq!(bridged_calls, direct_calls, "the same calls either way");
    let failed: Vec<_> = direct_calls
        .values()
        .filter(|c| c.error_type.as_deref() == Some("rate_limited"))
        .collect();
    assert_eq!(failed.len(), 2, "spans 3 and 6 failed");
    assert!(direct_calls.values().all(|c| c.app == "checkout"
        && c.tenant.as_deref() == Some("acme")
        && c.cost_usd.is_some()));
}

/// The real instrumented application (`tests/python/genai_app.py`: the `openai` client with
/// OpenTelemetry's GenAI instrumentation, plain, streamed and failed calls) exports the same
/// spans to one installation's OTLP/HTTP receiver and to rotel, whose Kafka exporter feeds
/// another installation's collector topic: both installations see the same calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumented_apps_spans_through_rotel_are_the_calls_of_the_direct_path() {
    let rotel_bin = std::env::var("LLMOPT_ROTEL").unwrap_or_else(|_| {
        panic!("LLMOPT_ROTEL is not set: run the README's test command (scripts/test.sh), which installs rotel")
    });
    let python = std::env::var("LLMOPT_PYTHON")
        .unwrap_or_else(|_| panic!("LLMOPT_PYTHON not set: run the README's test command"));
    let direct_otlp = free_port();
    let direct = Installation::new(
        "genai-direct",
        &format!("[ingest.otlp]\nlisten = \"127.0.0.1:{direct_otlp}\"\n"),
    );
    let topic = common::unique("genai_spans");
    let bridged = Installation::new(
        "genai-bridged",
        &format!("[[ingest.otlp.kafka_topics]]\ntopic = \"{topic}\"\n"),
    );
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&common::kafka_config(), "genai-test").expect("kafka"));
    let names = |install: &Installation| {
        TopicNames::new(&TransportConfig {
            topic_prefix: install.prefix.clone(),
            partitions: 6,
            ..TransportConfig::default()
        })
    };
    let mut specs = names(&bridged).all_specs();
    specs.extend(names(&direct).all_specs());
    specs.push(TopicSpec {
        name: topic.clone(),
        partitions: 1,
    });
    transport.ensure_topics(&specs).await.expect("topics");
    let (_rotel, rotel_http) = rotel_to_kafka(
        &rotel_bin,
        "protobuf",
        &topic,
        &bridged.dir.join("rotel.log"),
    );
    let direct_ingest = direct.spawn_service("ingest", &[]);
    let bridged_ingest = bridged.spawn_service("ingest", &[]);
    direct_ingest.wait_ready(Duration::from_secs(60));
    bridged_ingest.wait_ready(Duration::from_secs(60));

    let app = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/genai_app.py"
        ))
        .env(
            "GENAI_APP_ENDPOINTS",
            format!(
                "http://127.0.0.1:{direct_otlp}/v1/traces,http://127.0.0.1:{rotel_http}/v1/traces"
            ),
        )
        .env("OTEL_SERVICE_NAME", "checkout")
        .env("OTEL_RESOURCE_ATTRIBUTES", "llmopt.route=order-summary")
        .output()
        .expect("run the instrumented app");
    assert!(
        app.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&app.stdout),
        String::from_utf8_lossy(&app.stderr)
    );
    for (process, install) in [(&direct_ingest, &direct), (&bridged_ingest, &bridged)] {
        let three = format!(
            "llmopt_events_out_total{{service=\"ingest\",topic=\"{}\"}} 3\n",
            names(install).name(LogicalTopic::Telemetry)
        );
        wait_for("3 calls on telemetry", Duration::from_secs(60), || {
            process.metrics().contains(&three)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", process.metrics(), read(&process.log)));
    }
    direct_ingest.stop();
    bridged_ingest.stop();
    let direct_calls = calls_on_telemetry(&transport, &names(&direct)).await;
    let bridged_calls = calls_on_telemetry(&transport, &names(&bridged)).await;
    assert_eq!(direct_calls.len(), 3);
    assert_eq!(bridged_calls, direct_calls, "the same calls either way");
    let models: std::collections::BTreeSet<&str> = direct_calls
        .values()
        .map(|c| c.gen_ai_request_model.as_str())
        .collect();
    assert_eq!(
        models,
        ["broken-model", "gpt-4o", "gpt-4o-mini"]
            .into_iter()
            .collect()
    );
}
