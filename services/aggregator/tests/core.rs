//! Behaviour of the aggregator core through its `Processor` interface.

use llmopt_aggregator::{Aggregator, AggregatorConfig, LatencySketch, SnapshotError};
use llmopt_events::codec::encode_avro;
use llmopt_events::{AnyEvent, CallStatus, LlmCall, WindowAggregate, WindowKind};
use llmopt_runtime::{Input, Output, Processor};
use llmopt_transport::LogicalTopic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn call(app: &str, t: i64, latency_ms: f64) -> LlmCall {
    LlmCall {
        event_time: t,
        request_id: format!("req-{app}-{t}"),
        app: app.to_string(),
        route: "answer".to_string(),
        tenant: None,
        gen_ai_operation_name: "chat".to_string(),
        gen_ai_provider_name: "openai".to_string(),
        gen_ai_request_model: "gpt-4o".to_string(),
        gen_ai_response_model: None,
        gen_ai_usage_input_tokens: 100,
        gen_ai_usage_output_tokens: 10,
        latency_ms,
        time_to_first_token_ms: None,
        status: CallStatus::Ok,
        error_type: None,
        cost_usd: Some(0.5),
        quality_score: None,
        config_version: None,
        gen_ai_usage_cache_read_input_tokens: None,
        gen_ai_usage_reasoning_output_tokens: None,
        gen_ai_request_max_tokens: None,
        gen_ai_request_temperature: None,
        gen_ai_response_finish_reasons: Vec::new(),
    }
}

fn input(partition: i32, call: LlmCall) -> Input {
    Input {
        topic: LogicalTopic::Telemetry,
        partition,
        offset: 0,
        id: format!("in/{}/{}", call.app, call.event_time),
        source: "llmopt/ingest".to_string(),
        time_ms: Some(call.event_time),
        event: AnyEvent::LlmCall(call),
    }
}

fn tumbling_only() -> AggregatorConfig {
    AggregatorConfig {
        hopping: None,
        ..AggregatorConfig::default()
    }
}

fn core(config: AggregatorConfig) -> Aggregator {
    Aggregator::new(config).expect("valid config")
}

/// Feeds one call on partition 0.
fn feed(agg: &mut Aggregator, app: &str, t: i64) -> Vec<Output> {
    agg.process(&input(0, call(app, t, 100.0)))
}

fn aggregates(outputs: &[Output]) -> Vec<&WindowAggregate> {
    outputs
        .iter()
        .filter_map(|o| match &o.event {
            AnyEvent::WindowAggregate(w) => Some(w),
            _ => None,
        })
        .collect()
}

fn encode(outputs: &[Output]) -> Vec<(String, Vec<u8>)> {
    outputs
        .iter()
        .map(|o| {
            let bytes = match &o.event {
                AnyEvent::WindowAggregate(w) => encode_avro(w),
                AnyEvent::LlmCall(c) => encode_avro(c),
                other => panic!("unexpected output {other:?}"),
            }
            .expect("encodes");
            (o.id.clone(), bytes)
        })
        .collect()
}

#[test]
fn identity_of_the_core() {
    let agg = core(AggregatorConfig::default());
    assert_eq!(agg.name(), "aggregator");
    assert_eq!(agg.inputs(), vec![LogicalTopic::Telemetry]);
}

#[test]
fn window_boundaries_start_inclusive_end_exclusive() {
    let mut agg = core(tumbling_only());
    assert!(feed(&mut agg, "a", 60_000).is_empty()); // exactly at the start of [60 s, 120 s)
    assert!(feed(&mut agg, "a", 119_999).is_empty());
    assert!(feed(&mut agg, "a", 120_000).is_empty()); // exactly at its end: next window
                                                      // Watermark 119 999: one ms short of the end, nothing closes.
    assert!(feed(&mut agg, "a", 124_999).is_empty());
    // Watermark 120 000 = end: the window closes.
    let out = feed(&mut agg, "a", 125_000);
    let w = aggregates(&out);
    assert_eq!(w.len(), 1);
    let w = w[0];
    assert_eq!(
        (w.window_start, w.window_end, w.count),
        (60_000, 120_000, 2)
    );
    assert_eq!(w.window_kind, WindowKind::Tumbling);
    assert_eq!(w.window_id, "a/answer/openai/gpt-4o/T60000/60000");
    assert_eq!(w.id, "a/answer/openai/gpt-4o/T60000/60000/r0");
    assert_eq!(w.revision, 0);
    assert_eq!(w.watermark, 120_000);
    assert_eq!(out[0].topic, LogicalTopic::Windows);
    assert_eq!(out[0].key, "a/answer");
    assert_eq!(out[0].time_ms, 120_000);
    assert_eq!(out[0].id, w.id);
}

#[test]
fn out_of_order_within_tolerance_is_counted_on_time() {
    let mut agg = core(tumbling_only());
    feed(&mut agg, "a", 61_000);
    feed(&mut agg, "a", 118_000);
    // 6 s behind the newest event, but the watermark (113 s) has not reached the end (120 s).
    assert!(feed(&mut agg, "a", 112_000).is_empty());
    let out = feed(&mut agg, "a", 126_000);
    let w = aggregates(&out);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].count, w[0].revision), (3, 0));
    assert!(out.iter().all(|o| o.topic == LogicalTopic::Windows));
}

#[test]
fn late_event_within_lateness_reemits_a_revision() {
    let mut agg = core(tumbling_only());
    feed(&mut agg, "a", 1_000);
    let first = feed(&mut agg, "a", 65_000);
    let first = aggregates(&first);
    assert_eq!((first[0].count, first[0].revision), (1, 0));

    // Watermark 60 s; the window [0, 60 s) is kept until the watermark passes 120 s.
    let out = feed(&mut agg, "a", 2_000);
    let revised = aggregates(&out);
    assert_eq!(revised.len(), 1);
    let r1 = revised[0];
    assert_eq!(r1.window_id, first[0].window_id);
    assert_eq!(r1.revision, 1);
    assert_eq!(r1.id, format!("{}/r1", first[0].window_id));
    assert_eq!(r1.count, 2);
    assert_eq!(r1.input_tokens, 200);
    assert_eq!(out[0].id, r1.id);

    let out = feed(&mut agg, "a", 3_000);
    assert_eq!(
        (aggregates(&out)[0].revision, aggregates(&out)[0].count),
        (2, 3)
    );
}

#[test]
fn too_late_event_goes_to_telemetry_late() {
    let mut agg = core(tumbling_only());
    feed(&mut agg, "a", 1_000);
    feed(&mut agg, "a", 65_000); // emits [0, 60 s)
    assert_eq!(agg.retained_windows(), 1);
    // Watermark 120 001 > 60 000 + 60 000: [0, 60 s) is dropped.
    feed(&mut agg, "a", 125_001);
    assert_eq!(agg.retained_windows(), 1); // only [60 s, 120 s) remains

    let late = call("a", 2_000, 100.0);
    let inp = input(0, late.clone());
    let out = agg.process(&inp);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, LogicalTopic::TelemetryLate);
    assert_eq!(out[0].id, inp.id);
    assert_eq!(out[0].key, "a/answer");
    assert_eq!(out[0].time_ms, 2_000);
    assert_eq!(out[0].event, AnyEvent::LlmCall(late));

    // On the boundary of the lateness, the window [60 s, 120 s) still takes events:
    // watermark 120 001 <= 120 000 + 60 000.
    let out = feed(&mut agg, "a", 70_000);
    assert_eq!(aggregates(&out)[0].revision, 1);
}

#[test]
fn idle_partition_does_not_stall_emission() {
    let mut agg = core(AggregatorConfig {
        idle_timeout_ms: 30_000,
        ..tumbling_only()
    });
    agg.process(&input(0, call("a", 10_000, 100.0)));
    agg.process(&input(1, call("a", 10_000, 100.0)));
    // Partition 0 is silent; while it is within the idle timeout it holds the watermark.
    assert!(agg.process(&input(1, call("a", 40_000, 100.0))).is_empty());
    assert_eq!(agg.watermark(), Some(5_000));
    // 60 s behind partition 1 (> 30 s idle timeout): ignored, [0, 60 s) closes.
    let out = agg.process(&input(1, call("a", 70_000, 100.0)));
    let w = aggregates(&out);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].window_start, w[0].count), (0, 3));
    assert_eq!(agg.watermark(), Some(65_000));
}

#[test]
fn hopping_windows_contain_every_event_of_their_span() {
    let mut agg = core(AggregatorConfig::default());
    feed(&mut agg, "a", 1_000_000);
    let out = agg.flush();
    let w = aggregates(&out);
    assert_eq!(w.len(), 6);
    let hopping: Vec<_> = w
        .iter()
        .filter(|w| w.window_kind == WindowKind::Hopping)
        .map(|w| (w.window_start, w.window_end, w.count))
        .collect();
    assert_eq!(
        hopping,
        vec![
            (720_000, 1_020_000, 1),
            (780_000, 1_080_000, 1),
            (840_000, 1_140_000, 1),
            (900_000, 1_200_000, 1),
            (960_000, 1_260_000, 1),
        ]
    );
    assert!(w
        .iter()
        .any(|w| w.window_id == "a/answer/openai/gpt-4o/H300000/960000"));
    assert!(w
        .iter()
        .any(|w| w.window_id == "a/answer/openai/gpt-4o/T60000/960000"));
    assert_sorted(&out);

    // Events spread over 5 minutes all land in the hopping window that spans them.
    let mut agg = core(AggregatorConfig::default());
    for t in (600_000..900_000).step_by(30_000) {
        feed(&mut agg, "a", t);
    }
    let out = agg.flush();
    let span = aggregates(&out)
        .into_iter()
        .find(|w| w.window_kind == WindowKind::Hopping && w.window_start == 600_000)
        .expect("window [600 s, 900 s)");
    assert_eq!(span.count, 10);
}

fn assert_sorted(outputs: &[Output]) {
    let keys: Vec<_> = aggregates(outputs)
        .iter()
        .map(|w| (w.window_end, w.window_id.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn emission_is_ordered_by_window_end_then_id() {
    let mut agg = core(AggregatorConfig::default());
    for app in ["zeta", "alpha", "mid"] {
        feed(&mut agg, app, 10_000);
    }
    // Closes the tumbling windows [0, 60 s) and hopping windows ending by 60 s of all three.
    let out = feed(&mut agg, "alpha", 65_000);
    let ids: Vec<_> = aggregates(&out).iter().map(|w| w.id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            "alpha/answer/openai/gpt-4o/H300000/-240000/r0",
            "alpha/answer/openai/gpt-4o/T60000/0/r0",
            "mid/answer/openai/gpt-4o/H300000/-240000/r0",
            "mid/answer/openai/gpt-4o/T60000/0/r0",
            "zeta/answer/openai/gpt-4o/H300000/-240000/r0",
            "zeta/answer/openai/gpt-4o/T60000/0/r0",
        ]
    );
}

#[test]
fn metrics_are_accumulated_per_series() {
    let mut agg = core(tumbling_only());
    let mut calls = Vec::new();
    for i in 0..100 {
        let mut c = call("a", 1_000 + i, (i + 1) as f64);
        c.gen_ai_usage_input_tokens = 10;
        c.gen_ai_usage_output_tokens = 2;
        c.cost_usd = (i % 2 == 0).then_some(0.25);
        // Every fourth call is acme's, every tenth (not a multiple of four) globex's.
        c.tenant = if i % 4 == 0 {
            Some("acme".into())
        } else if i % 10 == 0 {
            Some("globex".into())
        } else {
            None
        };
        c.quality_score = (i < 4).then_some(0.5);
        c.time_to_first_token_ms = (i < 10).then_some(50.0);
        match i {
            0..=2 => {
                c.status = CallStatus::Error;
                c.error_type = Some("timeout".into());
            }
            3 => c.status = CallStatus::Error,
            _ => {}
        }
        calls.push(c);
    }
    // Another series: same request model, but the response names the model that answered.
    let mut other = call("a", 2_000, 10.0);
    other.gen_ai_response_model = Some("gpt-4o-2024-08-06".into());
    calls.push(other);
    for c in calls {
        agg.process(&input(0, c));
    }
    let out = feed(&mut agg, "a", 65_000);
    let w = aggregates(&out);
    assert_eq!(w.len(), 2);
    let main = w
        .iter()
        .find(|w| w.model == "gpt-4o")
        .expect("request-model series");
    let resp = w
        .iter()
        .find(|w| w.model == "gpt-4o-2024-08-06")
        .expect("response-model series");
    assert_eq!(resp.count, 1);
    assert_eq!(resp.ttft_p95_ms, None);

    assert_eq!(main.count, 100);
    assert_eq!(main.error_count, 4);
    assert_eq!(main.errors_by_type.get("timeout"), Some(&3));
    assert_eq!(main.errors_by_type.get("unknown"), Some(&1));
    assert_eq!((main.input_tokens, main.output_tokens), (1_000, 200));
    assert!((main.cost_usd - 12.5).abs() < 1e-9);
    // Costed calls (even i): acme has i % 4 == 0 (25 calls), globex i % 10 == 0 but not a
    // multiple of four (10, 30, 50, 70, 90: 5 calls); the rest name no tenant.
    assert_eq!(main.cost_by_tenant.len(), 2);
    assert!((main.cost_by_tenant["acme"] - 6.25).abs() < 1e-9);
    assert!((main.cost_by_tenant["globex"] - 1.25).abs() < 1e-9);
    assert_eq!((main.quality_sum, main.quality_count), (2.0, 4));
    // Exact lower percentiles of 1..=100 at rank floor(q * 99): 50, 90, 95, 99.
    for (got, exact) in [
        (main.latency_p50_ms, 50.0),
        (main.latency_p90_ms, 90.0),
        (main.latency_p95_ms, 95.0),
        (main.latency_p99_ms, 99.0),
    ] {
        assert!((got - exact).abs() / exact <= 0.01, "{got} vs {exact}");
    }
    let ttft = main.ttft_p95_ms.expect("streamed calls");
    assert!((ttft - 50.0).abs() / 50.0 <= 0.01);
    let sketch = LatencySketch::from_bytes(main.latency_sketch.as_deref().expect("sketch"))
        .expect("decodes");
    assert_eq!(sketch.count(), 100);
}

#[test]
fn non_llm_call_inputs_are_ignored() {
    let mut agg = core(AggregatorConfig::default());
    let mut inp = input(0, call("a", 1_000, 1.0));
    inp.event = AnyEvent::WindowAggregate(llmopt_events::samples::window_aggregate());
    assert!(agg.process(&inp).is_empty());
    assert_eq!(agg.watermark(), None);
    assert_eq!(agg.open_windows(), 0);
}

#[test]
fn flush_emits_open_windows_once() {
    let mut agg = core(tumbling_only());
    feed(&mut agg, "a", 1_000);
    feed(&mut agg, "b", 61_000);
    let out = agg.flush();
    let w = aggregates(&out);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].window_id, "a/answer/openai/gpt-4o/T60000/0");
    assert_eq!(w[1].window_id, "b/answer/openai/gpt-4o/T60000/60000");
    assert!(w.iter().all(|w| w.revision == 0));
    assert_eq!(agg.open_windows(), 0);
    assert!(agg.flush().is_empty());
}

/// A seeded stream with several apps, models, partitions, out-of-order and late events.
fn stream(seed: u64, n: usize) -> Vec<Input> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 1_767_225_600_000_i64;
    (0..n)
        .map(|i| {
            t += rng.gen_range(0..200);
            let jitter = if rng.gen_bool(0.02) {
                rng.gen_range(0..600_000) // some beyond the lateness
            } else {
                rng.gen_range(0..4_000)
            };
            let mut c = call(
                ["shop", "bot", "search"][rng.gen_range(0..3)],
                t - jitter,
                (rng.gen::<f64>() * 3.0 + 4.0).exp(),
            );
            c.gen_ai_response_model = rng.gen_bool(0.5).then(|| "gpt-4o-mini".to_string());
            c.time_to_first_token_ms = rng.gen_bool(0.5).then(|| rng.gen_range(20.0..400.0));
            if rng.gen_bool(0.05) {
                c.status = CallStatus::Error;
                c.error_type = rng.gen_bool(0.5).then(|| "rate_limit".to_string());
            }
            c.cost_usd = rng.gen_bool(0.9).then(|| rng.gen_range(0.0..0.01));
            c.quality_score = rng.gen_bool(0.3).then(|| rng.gen::<f64>());
            let mut inp = input(rng.gen_range(0..4), c);
            inp.id = format!("in-{i}");
            inp
        })
        .collect()
}

fn run(agg: &mut Aggregator, inputs: &[Input]) -> Vec<Output> {
    let mut out = Vec::new();
    for inp in inputs {
        let o = agg.process(inp);
        assert_sorted(&o);
        out.extend(o);
    }
    out
}

#[test]
fn replay_gives_identical_ids_and_bytes() {
    let inputs = stream(1, 20_000);
    let mut a = core(AggregatorConfig::default());
    let mut b = core(AggregatorConfig::default());
    let mut out_a = run(&mut a, &inputs);
    let mut out_b = run(&mut b, &inputs);
    out_a.extend(a.flush());
    out_b.extend(b.flush());
    assert!(out_a.iter().any(|o| o.topic == LogicalTopic::TelemetryLate));
    assert!(aggregates(&out_a).iter().any(|w| w.revision > 0));
    assert!(aggregates(&out_a).len() > 100);
    assert_eq!(encode(&out_a), encode(&out_b));
    assert_eq!(out_a, out_b);
}

#[test]
fn every_event_is_counted_once_or_sent_to_late() {
    let inputs = stream(3, 20_000);
    let mut agg = core(tumbling_only());
    let mut out = run(&mut agg, &inputs);
    out.extend(agg.flush());
    // The last revision of each window holds all its events.
    let mut last = std::collections::BTreeMap::new();
    for w in aggregates(&out) {
        last.insert(w.window_id.clone(), (w.revision, w.count));
    }
    let counted: i64 = last.values().map(|(_, c)| c).sum();
    let late = out
        .iter()
        .filter(|o| o.topic == LogicalTopic::TelemetryLate)
        .count() as i64;
    assert!(late > 0);
    assert_eq!(counted + late, inputs.len() as i64);
}

#[test]
fn snapshot_and_restore_continue_the_same_run() {
    let inputs = stream(2, 10_000);
    let (head, tail) = inputs.split_at(6_000);

    let mut whole = core(AggregatorConfig::default());
    let mut expected = run(&mut whole, &inputs);
    expected.extend(whole.flush());

    let mut first = core(AggregatorConfig::default());
    let mut got = run(&mut first, head);
    let snapshot = first.snapshot().expect("snapshot");
    assert_eq!(snapshot, first.snapshot().expect("snapshot"));
    let mut restored =
        Aggregator::restore(AggregatorConfig::default(), &snapshot).expect("restore");
    assert_eq!(restored.snapshot().expect("snapshot"), snapshot);
    assert_eq!(restored.watermark(), first.watermark());
    got.extend(run(&mut restored, tail));
    got.extend(restored.flush());
    assert_eq!(encode(&got), encode(&expected));
}

#[test]
fn restore_rejects_other_window_sizes_and_garbage() {
    let mut agg = core(AggregatorConfig::default());
    feed(&mut agg, "a", 1_000);
    let snapshot = agg.snapshot().expect("snapshot");
    let err = Aggregator::restore(tumbling_only(), &snapshot).expect_err("geometry changed");
    assert!(matches!(err, SnapshotError::GeometryMismatch { .. }));
    // Tolerances may change.
    let relaxed = AggregatorConfig {
        allowed_lateness_ms: 120_000,
        ..AggregatorConfig::default()
    };
    assert!(Aggregator::restore(relaxed, &snapshot).is_ok());
    assert!(matches!(
        Aggregator::restore(AggregatorConfig::default(), b"not json"),
        Err(SnapshotError::Decode(_))
    ));
}

/// Like [`run`], but as the runtime feeds the core: inputs it does not admit are dropped.
fn run_admitted(agg: &mut Aggregator, inputs: &[Input]) -> (Vec<Output>, usize) {
    let mut out = Vec::new();
    let mut dropped = 0;
    for inp in inputs {
        if agg.admit(inp) {
            out.extend(agg.process(inp));
        } else {
            dropped += 1;
        }
    }
    (out, dropped)
}

#[test]
fn copies_of_a_call_count_once() {
    let inputs = stream(4, 10_000);
    let mut reference = core(AggregatorConfig::default());
    let mut expected = run(&mut reference, &inputs);
    expected.extend(reference.flush());

    // Every 7th call delivered again a few records later, as ingest does after a crash.
    let mut with_copies = Vec::new();
    let mut copies = std::collections::VecDeque::new();
    for (i, inp) in inputs.iter().enumerate() {
        with_copies.push(inp.clone());
        if i % 7 == 0 {
            copies.push_back((i + 25, inp.clone()));
        }
        while copies.front().is_some_and(|(at, _)| *at <= i) {
            if let Some((_, copy)) = copies.pop_front() {
                with_copies.push(copy);
            }
        }
    }
    let mut agg = core(AggregatorConfig::default());
    let (mut got, dropped) = run_admitted(&mut agg, &with_copies);
    got.extend(agg.flush());
    let late_copies = with_copies.len() - inputs.len() - dropped;
    assert!(dropped > 1_000, "copies dropped: {dropped}");
    // A copy of a call that is too late by now changes no window: it goes to late again.
    let late = |o: &[Output]| {
        o.iter()
            .filter(|o| o.topic == LogicalTopic::TelemetryLate)
            .count()
    };
    assert_eq!(late(&got), late(&expected) + late_copies);
    let windows = |o: &[Output]| {
        o.iter()
            .filter(|o| o.topic == LogicalTopic::Windows)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(encode(&windows(&got)), encode(&windows(&expected)));
    assert!(agg.seen_ids() < inputs.len(), "old ids are forgotten");
}

#[test]
fn the_seen_ids_move_with_the_partition_checkpoint() {
    let inputs = stream(5, 4_000);
    let (head, tail) = inputs.split_at(3_000);
    let mut first = core(AggregatorConfig::default());
    run_admitted(&mut first, head);
    let mut second = core(AggregatorConfig::default());
    for p in 0..4 {
        let bytes = first.partition_snapshot(p).expect("snapshot");
        second.restore_partition(p, &bytes).expect("restore");
    }
    // The last calls before the checkpoint are delivered again to the new owner.
    let redelivered: Vec<Input> = head[2_900..].iter().chain(tail).cloned().collect();
    let (_, dropped) = run_admitted(&mut second, &redelivered);
    let (_, dropped_by_first) = run_admitted(&mut first, &redelivered);
    assert_eq!(dropped, dropped_by_first);
    assert!(dropped >= 90, "{dropped} of 100 copies dropped");
}
