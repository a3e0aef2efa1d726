//! Cost of the detectors per series point (one metric of one window of one series).
//!
//! * `spike_only`: the robust EWMA spike detector alone, the baseline of the comparison;
//! * `spike_and_change`: spike detector plus the change detector (CUSUM and EWMA chart), as the
//!   service runs them;
//! * `core_per_window_spike_only`: the core with the change detector disabled, its baseline;
//! * `core_per_window`: the whole detector core on tumbling windows of 50 series with the five
//!   default metrics, SLO rules and alert bookkeeping included; throughput counts series points
//!   (windows x metrics).

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llmopt_detector::{
    BaselineDetector, ChangeDetector, ChangeState, Detector, DetectorConfig, Metric, RobustEwma,
    RobustEwmaState,
};
use llmopt_events::{WindowAggregate, WindowKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const POINTS: usize = 100_000;
const SERIES: usize = 50;

fn values() -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..POINTS)
        .map(|_| 1000.0 * (0.1 * (rng.gen::<f64>() - 0.5)).exp())
        .collect()
}

fn windows() -> Vec<WindowAggregate> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let start = 1_767_225_600_000_i64;
    (0..POINTS / Metric::ALL.len())
        .map(|i| {
            let s = i % SERIES;
            let minute = (i / SERIES) as i64;
            let window_start = start + minute * 60_000;
            let count = rng.gen_range(50..500);
            WindowAggregate {
                id: format!("w{i}"),
                window_id: format!("w{i}"),
                revision: 0,
                window_kind: WindowKind::Tumbling,
                window_start,
                window_end: window_start + 60_000,
                app: format!("app-{}", s % 10),
                route: format!("route-{}", s % 5),
                provider: "openai".into(),
                model: format!("model-{}", s / 10),
                count,
                error_count: rng.gen_range(0..count / 20),
                errors_by_type: BTreeMap::new(),
                latency_p50_ms: 400.0,
                latency_p90_ms: 900.0,
                latency_p95_ms: rng.gen_range(1000.0..1200.0),
                latency_p99_ms: 1500.0,
                ttft_p95_ms: Some(rng.gen_range(200.0..260.0)),
                input_tokens: 100 * count,
                output_tokens: 20 * count,
                cost_usd: 0.002 * count as f64 * rng.gen_range(0.95..1.05),
                quality_sum: 0.8 * count as f64 + rng.gen_range(-1.0..1.0),
                quality_count: count,
                latency_sketch: None,
                watermark: window_start + 65_000,
                cost_by_tenant: BTreeMap::new(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let values = values();
    let config = DetectorConfig::default();
    let mut group = c.benchmark_group("detector");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("spike_only", |b| {
        let spike = RobustEwma::new(config.baseline.clone());
        b.iter(|| {
            let mut state = RobustEwmaState::default();
            for v in &values {
                black_box(spike.observe(Metric::LatencyP95Ms, &mut state, *v));
            }
        })
    });
    group.bench_function("spike_and_change", |b| {
        let spike = RobustEwma::new(config.baseline.clone());
        let change = ChangeDetector::new(config.change.clone());
        b.iter(|| {
            let mut spike_state = RobustEwmaState::default();
            let mut change_state = ChangeState::default();
            for v in &values {
                black_box(spike.observe(Metric::LatencyP95Ms, &mut spike_state, *v));
                black_box(change.observe(Metric::LatencyP95Ms, &mut change_state, *v, 200.0));
            }
        })
    });
    let windows = windows();
    group.throughput(Throughput::Elements(
        (windows.len() * Metric::ALL.len()) as u64,
    ));
    let mut spike_core = config.clone();
    spike_core.change.enabled = false;
    for (name, config) in [
        ("core_per_window_spike_only", spike_core),
        ("core_per_window", config.clone()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut detector = match Detector::new(config.clone()) {
                    Ok(d) => d,
                    Err(e) => panic!("default config rejected: {e}"),
                };
                for w in &windows {
                    black_box(detector.on_window(w));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
