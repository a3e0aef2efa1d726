//! A fleet's telemetry as the aggregator's input, the windows a live run makes of it, and
//! reading window and late topics back: shared by the backlog and aggregator chaos tests.

use std::collections::BTreeMap;

use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{AnyEvent, CallStatus, LlmCall, WindowAggregate};
use llmopt_runtime::{Input, Output, Processor};
use llmopt_transport::{LogicalTopic, OutboundMessage, Transport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const PARTITIONS: i32 = 6;
pub const KEYS: usize = 12;
/// A call every 432 ms of event time on each of 12 keys for 2 hours: 200,000 calls.
pub const CALLS: usize = 200_000;
const SPACING_MS: i64 = 432;

pub fn calls() -> Vec<(String, LlmCall)> {
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
                gen_ai_usage_cache_read_input_tokens: None,
                gen_ai_usage_reasoning_output_tokens: None,
                gen_ai_request_max_tokens: None,
                gen_ai_request_temperature: None,
                gen_ai_response_finish_reasons: Vec::new(),
            };
            (format!("call-{i}"), call)
        })
        .collect()
}

/// Final content of each window (latest revision, emission watermark left out).
pub fn window_contents(
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
pub fn live(calls: &[(String, LlmCall)]) -> (BTreeMap<String, WindowAggregate>, usize) {
    live_with(calls, AggregatorConfig::default())
}

/// [`live`] with an aggregator configured by `config`.
pub fn live_with(
    calls: &[(String, LlmCall)],
    config: AggregatorConfig,
) -> (BTreeMap<String, WindowAggregate>, usize) {
    let mut core = Aggregator::new(config).expect("config");
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

/// Every event on `topic`, read to the end of every partition.
pub async fn read_all(transport: &dyn Transport, topic: &str) -> Vec<AnyEvent> {
    let registry = llmopt_events::SchemaRegistry::current();
    llmopt_transport::read_topic(transport, topic, "test-reader")
        .await
        .expect("read topic")
        .into_iter()
        .map(|m| {
            let record = llmopt_cloudevents::KafkaMessage {
                key: m.key,
                headers: m.headers,
                value: m.value,
            };
            let (ce, _) =
                llmopt_cloudevents::decode(&record, &Default::default()).expect("cloudevent");
            AnyEvent::from_cloudevent(&ce, &registry).expect("event")
        })
        .collect()
}

/// The calls as records of the `telemetry` topic, keyed as ingest keys them.
pub fn records(calls: &[(String, LlmCall)]) -> Vec<OutboundMessage> {
    calls
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
        .collect()
}
