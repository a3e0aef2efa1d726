//! Cost of the stages the other benches do not cover, on the default scenario's own traffic
//! (an hour of the simulated fleet, generated once before timing):
//!
//! * `ingest/validate_and_price`: the ingest core per call (validation, normalisation, pricing);
//! * `ingest/record`: the same plus what the runtime's shell does around it per record: the
//!   CloudEvents binding and Avro decode of the raw record, and the encode of the output. The
//!   difference between the two is the codec's share;
//! * `decision/per_window`: the decision core on the aggregator's windows of that hour, with the
//!   routes' initial configs first (strategies, statistics and lifecycles included).
//!
//! The aggregator's and detector's cores have benches of their own (`aggregator_core`,
//! `detector_core`), the codec too (`codec`). Run: `cargo bench --bench pipeline_stages`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use llmopt::config::AppConfig;
use llmopt::demo::{prepare, DemoOptions};
use llmopt_cloudevents::{DecodeLimits, KafkaMessage};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{AnyEvent, SchemaRegistry};
use llmopt_runtime::{Input, Processor};
use llmopt_sim::{Scenario, SimEvent};
use llmopt_transport::LogicalTopic;

struct Traffic {
    config: AppConfig,
    raw: Vec<Input>,
    records: Vec<KafkaMessage>,
    decision_inputs: Vec<Input>,
    windows: usize,
}

fn input(topic: LogicalTopic, offset: usize, id: String, source: String, event: AnyEvent) -> Input {
    Input {
        topic,
        partition: 0,
        offset: offset as i64,
        id,
        source,
        time_ms: None,
        event,
    }
}

fn traffic() -> Traffic {
    let options = DemoOptions {
        seed: 42,
        scenario: Scenario::default(),
        step_s: 10,
        speed: 0.0,
        duration_s: Some(3_600),
        max_rate: None,
    };
    let (config, mut sim) = prepare(AppConfig::default(), &options).expect("demo config");
    let start = sim.start_ms();
    let changes = sim.initial_config_changes(start);
    let events = sim.advance(sim.end_ms(), &mut |_: &str, _: &str| None);
    let mut raw = Vec::new();
    let mut records = Vec::new();
    for event in events {
        if let SimEvent::Call { call, id, source } = event {
            let meta = EventMeta {
                id: id.clone(),
                source: source.clone(),
                time_ms: Some(call.event_time),
                partition_key: Some(format!("{}/{}", call.app, call.route)),
                traceparent: None,
                subject: None,
            };
            records.push(wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode"));
            raw.push(input(
                LogicalTopic::TelemetryRaw,
                raw.len(),
                id,
                source,
                AnyEvent::LlmCall(call),
            ));
        }
    }
    // The decision core's inputs: the initial configs, then the windows of that traffic.
    let mut ingest = llmopt_ingest::Ingest::new(config.ingest.clone());
    let mut aggregator =
        llmopt_aggregator::Aggregator::new(config.aggregator.clone()).expect("aggregator");
    let mut decision_inputs: Vec<Input> = changes
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            input(
                LogicalTopic::ConfigChanges,
                i,
                c.id.clone(),
                "/operators".into(),
                AnyEvent::ConfigChange(c),
            )
        })
        .collect();
    let mut windows = 0;
    for call in &raw {
        for normalised in ingest.process(call) {
            let telemetry = input(
                LogicalTopic::Telemetry,
                call.offset as usize,
                normalised.id,
                "llmopt/ingest".into(),
                normalised.event,
            );
            for out in aggregator.process(&telemetry) {
                if out.topic == LogicalTopic::Windows {
                    windows += 1;
                    decision_inputs.push(input(
                        LogicalTopic::Windows,
                        windows,
                        out.id,
                        "llmopt/aggregator".into(),
                        out.event,
                    ));
                }
            }
        }
    }
    Traffic {
        config,
        raw,
        records,
        decision_inputs,
        windows,
    }
}

fn bench(c: &mut Criterion) {
    let traffic = traffic();
    let registry = SchemaRegistry::current();
    let limits = DecodeLimits::default();

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(traffic.raw.len() as u64));
    group.sample_size(20);
    group.bench_function("validate_and_price", |b| {
        let mut core = llmopt_ingest::Ingest::new(traffic.config.ingest.clone());
        b.iter(|| {
            let mut published = 0;
            for input in &traffic.raw {
                if core.validate(input).is_ok() {
                    published += core.process(input).len();
                }
            }
            black_box(published)
        });
    });
    group.bench_function("record", |b| {
        let mut core = llmopt_ingest::Ingest::new(traffic.config.ingest.clone());
        b.iter(|| {
            let mut bytes = 0;
            for (offset, record) in traffic.records.iter().enumerate() {
                let (ce, _) = llmopt_cloudevents::decode(record, &limits).expect("decode");
                let event = AnyEvent::from_cloudevent(&ce, &registry).expect("event");
                let input = input(LogicalTopic::TelemetryRaw, offset, ce.id, ce.source, event);
                if core.validate(&input).is_err() {
                    continue;
                }
                for output in core.process(&input) {
                    let meta = EventMeta {
                        id: output.id,
                        source: "llmopt/ingest".into(),
                        time_ms: Some(output.time_ms),
                        partition_key: Some(output.key),
                        traceparent: None,
                        subject: None,
                    };
                    let ce = output
                        .event
                        .to_cloudevent(&meta, DataFormat::Avro)
                        .expect("encode");
                    bytes += llmopt_cloudevents::to_binary(&ce).size();
                }
            }
            black_box(bytes)
        });
    });
    group.finish();

    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(traffic.windows as u64));
    group.sample_size(20);
    group.bench_function("per_window", |b| {
        b.iter_batched(
            || llmopt_decision::Decision::new(traffic.config.decision.clone()).expect("decision"),
            |mut core| {
                let mut outputs = 0;
                for input in &traffic.decision_inputs {
                    outputs += core.process(input).len();
                }
                black_box(outputs)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
