//! Ingest through the runner on a real transport: a stream mixing valid, duplicated and
//! malformed telemetry ⇒ every valid event once on `telemetry`, every malformed record in the
//! dead-letter topic with its reason and original bytes, nothing else lost. Same body on Kafka +
//! Redis and on the embedded transport + memory store.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use llmopt_cloudevents::{CloudEvent, KafkaMessage};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, DeadLetter, LlmCall, SchemaRegistry};
use llmopt_ingest::{DedupEffects, Ingest, IngestConfig};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::shutdown;
use llmopt_state::memory::MemoryStore;
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateConfig, StateKind, StateStore};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

fn valid(n: u64, format: DataFormat) -> OutboundMessage {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("call-{n}"),
        source: format!("/apps/{}", call.app),
        time_ms: Some(call.event_time),
        partition_key: Some(format!("{}/{}", call.app, call.route)),
        traceparent: Some(format!("00-{:032x}-{:016x}-01", n + 7, n + 7)),
        subject: None,
    };
    OutboundMessage::from(wire::to_kafka(&call, &meta, format).expect("encode"))
}

/// Malformed records, each with the `error_kind` the dead-letter record must carry.
fn malformed() -> Vec<(&'static str, OutboundMessage)> {
    let good = |n| valid(n, DataFormat::Avro);
    let without = |n: u64, header: &str| {
        let mut m = good(n);
        m.headers.retain(|(k, _)| k != header);
        m
    };
    let with_header = |n: u64, header: &str, value: &[u8]| {
        let mut m = good(n);
        for (k, v) in &mut m.headers {
            if k == header {
                *v = Some(value.to_vec());
            }
        }
        m
    };
    let json_bad = {
        let ce = CloudEvent {
            id: "bad-json".into(),
            source: "/apps/x".into(),
            ty: "io.llmopt.llm_call.v1".into(),
            datacontenttype: Some("application/json".into()),
            data: Some(br#"{"event_time": 1, "app": "a"}"#.to_vec()),
            ..CloudEvent::default()
        };
        OutboundMessage::from(llmopt_cloudevents::to_binary(&ce))
    };
    let unknown_schema = {
        let mut m = good(9001);
        if let Some(v) = m.value.as_mut() {
            v[2..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        }
        m
    };
    let oversized = {
        let mut m = good(9002);
        m.headers.push(("padding".into(), Some(vec![b'x'; 8192])));
        m
    };
    let negative_latency = {
        let mut call = samples::llm_call(9003);
        call.latency_ms = -3.0;
        let meta = EventMeta {
            id: "neg".into(),
            source: "/apps/x".into(),
            ..EventMeta::default()
        };
        OutboundMessage::from(wire::to_kafka(&call, &meta, DataFormat::Json).expect("encode"))
    };
    vec![
        (
            "not_json",
            OutboundMessage {
                value: Some(b"\x00\x01 not an event".to_vec()),
                ..Default::default()
            },
        ),
        ("missing_attribute", without(9004, "ce_id")),
        (
            "wrong_specversion",
            with_header(9005, "ce_specversion", b"0.3"),
        ),
        ("bad_data", json_bad),
        ("unknown_schema", unknown_schema),
        ("oversized", oversized),
        ("invalid_telemetry", negative_latency),
        (
            "unknown_type",
            with_header(9006, "ce_type", b"com.example.other"),
        ),
    ]
}

async fn mixed_stream(transport: Arc<dyn Transport>, store: Arc<dyn StateStore>) {
    let config = TransportConfig {
        topic_prefix: format!("{}.", common::unique("ingest")),
        partitions: 3,
        ..TransportConfig::default()
    };
    let names = TopicNames::new(&config);
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let raw = names.name(LogicalTopic::TelemetryRaw);

    let mut records = Vec::new();
    for n in 0..200 {
        records.push(valid(
            n,
            if n % 4 == 0 {
                DataFormat::Json
            } else {
                DataFormat::Avro
            },
        ));
    }
    for n in 0..20 {
        records.push(valid(n * 7, DataFormat::Avro)); // redeliveries of the same source+id
    }
    let bad = malformed();
    for (_, m) in &bad {
        records.push(m.clone());
    }
    transport
        .publish_batch(&raw, records)
        .await
        .expect("publish");

    let health = Arc::new(Health::new());
    let runner = Runner::new(
        Ingest::new(IngestConfig::default()),
        DedupEffects::new(store, Duration::from_secs(600)),
        transport.clone(),
        names.clone(),
        Arc::new(ServiceMetrics::new("ingest")),
        health.clone(),
        RunnerConfig {
            limits: llmopt_cloudevents::DecodeLimits {
                max_message_bytes: 4096,
            },
            stop_after_idle_polls: Some(15),
            ..RunnerConfig::default()
        },
    );
    let (_trigger, stop) = shutdown::channel();
    let (_, summary) = runner.run(stop).await.expect("runner");
    assert!(!health.is_ready(), "not ready after stopping");
    assert_eq!(summary.consumed, 200 + 20 + bad.len() as u64);
    assert_eq!(summary.duplicates, 20);
    assert_eq!(summary.dead_lettered, bad.len() as u64);

    // Read both outputs back with a fresh group.
    let group = common::unique("check");
    let topics = [
        names.name(LogicalTopic::Telemetry),
        names.name(LogicalTopic::DeadLetter),
    ];
    let mut consumer = transport
        .subscribe(&group, &topics)
        .await
        .expect("subscribe");
    let registry = SchemaRegistry::current();
    let mut calls: HashMap<String, LlmCall> = HashMap::new();
    let mut dead: BTreeMap<String, DeadLetter> = BTreeMap::new();
    let mut traced = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while calls.len() + dead.len() < 200 + bad.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "got {} calls, {} dead letters",
            calls.len(),
            dead.len()
        );
        let Some(m) = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        else {
            continue;
        };
        let record = KafkaMessage {
            key: m.key.clone(),
            headers: m.headers.clone(),
            value: m.value.clone(),
        };
        if m.topic == topics[0] {
            let (ce, _, call) =
                wire::decode_kafka::<LlmCall>(&record, &Default::default(), &registry)
                    .expect("telemetry decodes");
            assert_eq!(ce.source, "llmopt/ingest");
            assert!(call.cost_usd.is_some(), "every output is priced");
            traced += usize::from(ce.traceparent().is_some());
            assert!(
                calls.insert(ce.id.clone(), call).is_none(),
                "duplicate output {}",
                ce.id
            );
        } else {
            let (_, _, dl) =
                wire::decode_kafka::<DeadLetter>(&record, &Default::default(), &registry)
                    .expect("dead letter decodes");
            dead.insert(dl.error_kind.clone(), dl);
        }
    }
    consumer.close().await.expect("close");
    assert_eq!(calls.len(), 200, "every valid event exactly once");
    assert_eq!(traced, 200, "traceparent carried through");
    for n in 0..200u64 {
        let call = &calls[&format!("call-{n}")];
        assert_eq!(call.request_id, samples::llm_call(n).request_id);
    }
    // Every valid event is aggregated: the aggregator core over ingest's output counts all 200.
    let mut aggregator =
        llmopt_aggregator::Aggregator::new(llmopt_aggregator::AggregatorConfig::default())
            .expect("aggregator");
    let mut outputs = Vec::new();
    let mut ordered: Vec<&LlmCall> = calls.values().collect();
    ordered.sort_by_key(|c| c.event_time);
    for (offset, call) in ordered.into_iter().enumerate() {
        outputs.extend(llmopt_runtime::Processor::process(
            &mut aggregator,
            &llmopt_runtime::Input {
                topic: LogicalTopic::Telemetry,
                partition: 0,
                offset: offset as i64,
                id: call.request_id.clone(),
                source: "llmopt/ingest".into(),
                time_ms: Some(call.event_time),
                event: llmopt_events::AnyEvent::LlmCall(call.clone()),
            },
        ));
    }
    outputs.extend(aggregator.flush());
    let counted: i64 = outputs
        .iter()
        .filter_map(|o| match &o.event {
            llmopt_events::AnyEvent::WindowAggregate(w)
                if w.window_kind == llmopt_events::WindowKind::Tumbling =>
            {
                Some(w.count)
            }
            _ => None,
        })
        .sum();
    assert_eq!(counted, 200, "all valid events aggregated, none twice");

    for (kind, original) in &bad {
        let dl = dead
            .get(*kind)
            .unwrap_or_else(|| panic!("a dead letter of kind {kind}: {:?}", dead.keys()));
        assert_eq!(
            dl.original_value, original.value,
            "{kind}: original bytes kept"
        );
        assert_eq!(dl.service, "ingest");
        assert!(!dl.error_message.is_empty());
        assert_eq!(dl.source_topic, raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_redis_mixed_stream() {
    let transport =
        Arc::new(KafkaTransport::new(&common::kafka_config(), "ingest-test").expect("kafka"));
    let config = StateConfig {
        kind: StateKind::Redis,
        redis_url: common::redis_url(),
        key_prefix: format!("{}:", common::unique("ingest")),
        ..StateConfig::default()
    };
    let store = Arc::new(RedisStore::connect(&config).await.expect("redis"));
    mixed_stream(transport, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mixed_stream() {
    mixed_stream(
        Arc::new(EmbeddedTransport::new(3)),
        Arc::new(MemoryStore::new()),
    )
    .await;
}
