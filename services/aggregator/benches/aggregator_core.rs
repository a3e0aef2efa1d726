//! Throughput of the aggregator core on one thread: the duplicate check, window assignment (1
//! tumbling + 5 hopping windows per event), two sketches and the sums per window, watermarking
//! and emission.
//!
//! 100 000 pre-built inputs over 50 series on 4 partitions (each series on one), 10 ms apart in
//! event time (about 17 minutes, so windows open, close and expire during the run), with mild
//! disorder.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::{AnyEvent, CallStatus, LlmCall};
use llmopt_runtime::{Input, Processor};
use llmopt_transport::LogicalTopic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EVENTS: usize = 100_000;
const SERIES: usize = 50;

fn inputs() -> Vec<Input> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let start = 1_767_225_600_000_i64;
    (0..EVENTS)
        .map(|i| {
            let s = rng.gen_range(0..SERIES);
            let failed = rng.gen_bool(0.02);
            let call = LlmCall {
                event_time: start + i as i64 * 10 - rng.gen_range(0..2_000),
                request_id: format!("req-{i}"),
                app: format!("app-{}", s % 10),
                route: format!("route-{}", s % 5),
                tenant: None,
                gen_ai_operation_name: "chat".into(),
                gen_ai_provider_name: "openai".into(),
                gen_ai_request_model: format!("model-{}", s / 10),
                gen_ai_response_model: None,
                gen_ai_usage_input_tokens: rng.gen_range(10..2_000),
                gen_ai_usage_output_tokens: rng.gen_range(1..500),
                latency_ms: (rng.gen::<f64>() * 3.0 + 4.0).exp(),
                time_to_first_token_ms: rng.gen_bool(0.5).then(|| rng.gen_range(20.0..400.0)),
                status: if failed {
                    CallStatus::Error
                } else {
                    CallStatus::Ok
                },
                error_type: failed.then(|| "timeout".into()),
                cost_usd: Some(rng.gen_range(0.0..0.01)),
                quality_score: rng.gen_bool(0.2).then(|| rng.gen()),
                config_version: Some(1),
                gen_ai_usage_cache_read_input_tokens: None,
                gen_ai_usage_reasoning_output_tokens: None,
                gen_ai_request_max_tokens: None,
                gen_ai_request_temperature: None,
                gen_ai_response_finish_reasons: Vec::new(),
            };
            Input {
                topic: LogicalTopic::Telemetry,
                // Keyed like ingest's output: a series always comes from the same partition.
                partition: (s % 4) as i32,
                offset: i as i64,
                id: format!("in-{i}"),
                source: "llmopt/ingest".into(),
                time_ms: Some(call.event_time),
                event: AnyEvent::LlmCall(call),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    let mut group = c.benchmark_group("aggregator_core");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, config) in [
        ("tumbling+hopping", AggregatorConfig::default()),
        (
            "tumbling_only",
            AggregatorConfig {
                hopping: None,
                ..AggregatorConfig::default()
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Aggregator::new(config.clone()).expect("valid config"),
                |mut agg| {
                    let mut emitted = 0_usize;
                    // As the runner feeds it: the duplicate check, then the call.
                    for input in &inputs {
                        if agg.admit(black_box(input)) {
                            emitted += agg.process(black_box(input)).len();
                        }
                    }
                    emitted += agg.flush().len();
                    black_box(emitted)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
