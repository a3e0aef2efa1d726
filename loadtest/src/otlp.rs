//! Spans/s through ingest's OTLP/HTTP receiver into Kafka against the CloudEvents path for the
//! same calls, in one process on one broker: the CloudEvents path publishes the calls a
//! producer would write to `telemetry.raw` (Avro CloudEvents, batches of `batch`); the OTLP path
//! POSTs the same calls as GenAI spans, `batch` spans per export (the OpenTelemetry SDK's batch
//! size), protobuf, to the receiver, which maps them, writes them to Kafka and answers once the
//! broker acknowledged. Both are timed from the first record to the last acknowledgement.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use llmopt_events::samples;
use llmopt_ingest::otlp::{map_export, OtlpMapping};
use llmopt_ingest::otlp_receiver::{self, OtlpCounters, OtlpReceiver, OtlpReceiverConfig};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{KafkaConfig, OutboundMessage, TopicSpec, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The OTLP bench.
pub struct OtlpBench {
    /// Calls (spans) per path.
    pub calls: u64,
    /// Spans per export, records per publish batch.
    pub batch: usize,
    /// Concurrent exporters.
    pub clients: usize,
    /// Broker.
    pub bootstrap: String,
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The GenAI span of sample call `n`.
fn span(n: u64) -> Span {
    let call = samples::llm_call(n);
    let end = call.event_time as u64 * 1_000_000;
    let start = end - (call.latency_ms * 1e6) as u64;
    let mut id = [1u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Span {
        trace_id: id.to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: format!("chat {}", call.gen_ai_request_model),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            kv("gen_ai.operation.name", Value::StringValue("chat".into())),
            kv(
                "gen_ai.provider.name",
                Value::StringValue(call.gen_ai_provider_name.clone()),
            ),
            kv(
                "gen_ai.request.model",
                Value::StringValue(call.gen_ai_request_model.clone()),
            ),
            kv(
                "gen_ai.usage.input_tokens",
                Value::IntValue(call.gen_ai_usage_input_tokens),
            ),
            kv(
                "gen_ai.usage.output_tokens",
                Value::IntValue(call.gen_ai_usage_output_tokens),
            ),
            kv("llmopt.app", Value::StringValue(call.app.clone())),
            kv("llmopt.route", Value::StringValue(call.route.clone())),
        ],
        ..Default::default()
    }
}

fn export(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("bench".into()))],
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
}

/// One POST over a fresh connection; the status.
fn post(port: u16, body: &[u8]) -> anyhow::Result<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

impl OtlpBench {
    pub async fn run(self) -> anyhow::Result<()> {
        let kafka = KafkaConfig {
            bootstrap_servers: self.bootstrap.clone(),
            ..KafkaConfig::default()
        };
        let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&kafka, "otlp-bench")?);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let (ce_topic, otlp_topic, dlq) = (
            format!("bench-{stamp}.ce.raw"),
            format!("bench-{stamp}.otlp.raw"),
            format!("bench-{stamp}.deadletter"),
        );
        let specs = [&ce_topic, &otlp_topic, &dlq].map(|t| TopicSpec {
            name: t.clone(),
            partitions: 6,
        });
        transport.ensure_topics(&specs).await?;

        // The same calls both ways: the spans' calls as the receiver maps them.
        let bodies: Vec<Vec<u8>> = (0..self.calls)
            .collect::<Vec<_>>()
            .chunks(self.batch)
            .map(|ns| export(ns.iter().map(|n| span(*n)).collect()))
            .collect();
        let mut records = Vec::with_capacity(self.calls as usize);
        for body in &bodies {
            let request = ExportTraceServiceRequest::decode(body.as_slice())?;
            for m in map_export(&request, &OtlpMapping::default()).calls {
                records.push(otlp_receiver::raw_record(&m)?);
            }
        }
        anyhow::ensure!(records.len() as u64 == self.calls, "every span is a call");

        // Warm-up: the producer knows both topics' partitions before anything is timed.
        for topic in [&ce_topic, &otlp_topic] {
            transport
                .publish_batch(topic, records.iter().take(self.batch).cloned().collect())
                .await?;
        }
        // CloudEvents: the records a producer writes, `clients` publishers in parallel.
        let started = Instant::now();
        let mut chunks: Vec<Vec<OutboundMessage>> = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(self.batch));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        let per_client = chunks.len().div_ceil(self.clients.max(1));
        let mut tasks = Vec::new();
        let mut chunks = chunks.into_iter();
        for _ in 0..self.clients.max(1) {
            let mine: Vec<Vec<OutboundMessage>> = chunks.by_ref().take(per_client).collect();
            let (transport, topic) = (transport.clone(), ce_topic.clone());
            tasks.push(tokio::spawn(async move {
                for chunk in mine {
                    transport.publish_batch(&topic, chunk).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let ce_secs = started.elapsed().as_secs_f64();

        // OTLP/HTTP: the receiver in this process, `clients` exporters POSTing in parallel.
        let registry = prometheus::Registry::new();
        let receiver = OtlpReceiver::new(
            transport.clone(),
            otlp_topic.clone(),
            dlq.clone(),
            OtlpReceiverConfig::default(),
            &OtlpCounters::register(&registry)?,
        );
        let bound = otlp_receiver::serve("127.0.0.1:0".parse()?, Arc::new(receiver)).await?;
        let port = bound.port();
        let started = Instant::now();
        let per_client = bodies.len().div_ceil(self.clients.max(1));
        let bodies = Arc::new(bodies);
        let mut tasks = Vec::new();
        for c in 0..self.clients.max(1) {
            let bodies = bodies.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                for body in bodies.iter().skip(c * per_client).take(per_client) {
                    let status = post(port, body)?;
                    anyhow::ensure!(status == 200, "export answered {status}");
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let otlp_secs = started.elapsed().as_secs_f64();

        let ce_rate = self.calls as f64 / ce_secs;
        let otlp_rate = self.calls as f64 / otlp_secs;
        println!(
            "calls {} | batch {} | clients {}",
            self.calls, self.batch, self.clients
        );
        println!("CloudEvents producer into Kafka: {ce_rate:>10.0} calls/s ({ce_secs:.2} s)");
        println!("OTLP/HTTP receiver into Kafka:   {otlp_rate:>10.0} spans/s ({otlp_secs:.2} s)");
        println!("ratio OTLP / CloudEvents: {:.2}", otlp_rate / ce_rate);
        Ok(())
    }
}
