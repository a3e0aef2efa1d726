//! Behaviour of the detector core through its public API: windows in, anomalies and alerts out.

use std::collections::BTreeMap;

use llmopt_detector::{
    AnomalyAlertPolicy, Comparison, Detector, DetectorConfig, Matchers, Metric, SloRule,
    SnapshotError,
};
use llmopt_events::{
    Alert, AlertStatus, Anomaly, AnyEvent, Direction, Severity, WindowAggregate, WindowKind,
};
use llmopt_runtime::{Input, Output, Processor};
use llmopt_transport::LogicalTopic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const OPENAI: (&str, &str, &str, &str) = ("checkout", "summarize", "openai", "gpt-4o-mini");
const ANTHROPIC: (&str, &str, &str, &str) =
    ("checkout", "summarize", "anthropic", "claude-3-5-haiku");

/// Per-window metric values a test wants to see.
#[derive(Debug, Clone, Copy)]
struct Vals {
    count: i64,
    error_rate: f64,
    latency: f64,
    cost_per_call: f64,
    quality: f64,
    ttft: f64,
}

impl Default for Vals {
    fn default() -> Self {
        Self {
            count: 1000,
            error_rate: 0.01,
            latency: 1200.0,
            cost_per_call: 0.002,
            quality: 0.8,
            ttft: 300.0,
        }
    }
}

/// The tumbling window number `i` of `series` with values `v`.
fn window(series: (&str, &str, &str, &str), i: i64, v: Vals) -> WindowAggregate {
    let (app, route, provider, model) = series;
    let start = T0 + i * MINUTE;
    let window_id = format!("{app}/{route}/{provider}/{model}/T{MINUTE}/{start}");
    WindowAggregate {
        id: format!("{window_id}/r0"),
        window_id,
        revision: 0,
        window_kind: WindowKind::Tumbling,
        window_start: start,
        window_end: start + MINUTE,
        app: app.into(),
        route: route.into(),
        provider: provider.into(),
        model: model.into(),
        count: v.count,
        error_count: (v.error_rate * v.count as f64).round() as i64,
        errors_by_type: BTreeMap::new(),
        latency_p50_ms: v.latency / 2.0,
        latency_p90_ms: v.latency * 0.9,
        latency_p95_ms: v.latency,
        latency_p99_ms: v.latency * 1.5,
        ttft_p95_ms: Some(v.ttft),
        input_tokens: 100 * v.count,
        output_tokens: 20 * v.count,
        cost_usd: v.cost_per_call * v.count as f64,
        quality_sum: v.quality * v.count as f64,
        quality_count: v.count,
        latency_sketch: None,
        watermark: start + MINUTE + 5_000,
        cost_by_tenant: BTreeMap::new(),
    }
}

/// Small deterministic jitter so that the MAD is not zero.
fn jitter(i: i64) -> f64 {
    [0.0, 1.0, -1.0, 2.0, -2.0][(i % 5) as usize]
}

fn normal_vals(i: i64) -> Vals {
    Vals {
        latency: 1200.0 + 20.0 * jitter(i),
        ttft: 300.0 + 5.0 * jitter(i),
        cost_per_call: 0.002 + 0.00002 * jitter(i),
        quality: 0.8 + 0.005 * jitter(i),
        error_rate: 0.01 + 0.001 * jitter(i),
        ..Vals::default()
    }
}

fn anomalies(out: &[Output]) -> Vec<&Anomaly> {
    out.iter()
        .filter_map(|o| match &o.event {
            AnyEvent::Anomaly(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn alerts(out: &[Output]) -> Vec<&Alert> {
    out.iter()
        .filter_map(|o| match &o.event {
            AnyEvent::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn detector(config: DetectorConfig) -> Detector {
    match Detector::new(config) {
        Ok(d) => d,
        Err(e) => panic!("invalid config: {e}"),
    }
}

/// Only the baseline and anomaly alerts, no SLO rules.
fn anomaly_only_config() -> DetectorConfig {
    DetectorConfig {
        rules: Vec::new(),
        ..DetectorConfig::default()
    }
}

/// Only the spike detector's anomalies and alerts: no SLO rules, no change charts.
fn spike_only_config() -> DetectorConfig {
    let mut config = anomaly_only_config();
    config.change.enabled = false;
    config
}

fn error_rate_rule(for_windows: u32) -> SloRule {
    SloRule {
        name: "HighErrorRate".into(),
        metric: Metric::ErrorRate,
        comparison: Comparison::Gt,
        threshold: 0.05,
        for_windows,
        severity: Severity::Critical,
        matchers: Matchers::default(),
        summary: None,
        min_calls: None,
        confidence: None,
    }
}

/// Only SLO rules: no baselines, so the rule lifecycle is tested alone.
fn rules_only_config(rules: Vec<SloRule>) -> DetectorConfig {
    DetectorConfig {
        metrics: Vec::new(),
        rules,
        cooldown_ms: 5 * MINUTE,
        ..DetectorConfig::default()
    }
}

fn error_rate(rate: f64) -> Vals {
    Vals {
        error_rate: rate,
        ..Vals::default()
    }
}

fn feed(d: &mut Detector, windows: &[WindowAggregate]) -> Vec<Output> {
    windows.iter().flat_map(|w| d.on_window(w)).collect()
}

#[test]
fn no_anomaly_before_warm_up_completes() {
    let mut d = detector(anomaly_only_config());
    let warmup = d.config().baseline.warmup_windows as i64;
    for i in 0..warmup {
        // Wild values, including a 10x spike: nothing is known yet, so nothing is anomalous.
        let v = Vals {
            latency: if i == 5 {
                12_000.0
            } else {
                1000.0 + 50.0 * i as f64
            },
            error_rate: if i == 3 { 0.5 } else { 0.01 },
            ..Vals::default()
        };
        let out = d.on_window(&window(OPENAI, i, v));
        assert!(out.is_empty(), "window {i}: {out:?}");
    }
    // The first scored window, normal: still nothing.
    let out = d.on_window(&window(OPENAI, warmup, normal_vals(warmup)));
    assert!(anomalies(&out).is_empty(), "{out:?}");
}

#[test]
fn step_change_after_warm_up_is_an_anomaly_with_evidence() {
    let mut d = detector(anomaly_only_config());
    for i in 0..30 {
        let out = d.on_window(&window(OPENAI, i, normal_vals(i)));
        assert!(out.is_empty(), "window {i}: {out:?}");
    }
    let step = Vals {
        latency: 3000.0,
        ..normal_vals(30)
    };
    let w = window(OPENAI, 30, step);
    let out = d.on_window(&w);
    let found = anomalies(&out);
    assert_eq!(found.len(), 1, "{out:?}");
    let a = found[0];
    assert_eq!(a.metric, "latency_p95_ms");
    assert_eq!(a.value, 3000.0);
    assert!(
        (a.baseline - 1200.0).abs() < 30.0,
        "baseline {}",
        a.baseline
    );
    assert!(a.score > 6.0, "score {}", a.score);
    assert_eq!(a.direction, Direction::Up);
    assert_eq!(a.detector, "robust-ewma-mad");
    assert_eq!(a.window_id, w.window_id);
    assert_eq!(a.event_time, w.window_end);
    let expected_id = format!(
        "robust-ewma-mad/checkout/summarize/openai/gpt-4o-mini/latency_p95_ms/{}",
        w.window_end
    );
    assert_eq!(a.id, expected_id);
    assert_eq!(out[0].id, expected_id);
    assert_eq!(out[0].topic, LogicalTopic::Anomalies);
    assert_eq!(out[0].key, "checkout/summarize");
    assert_eq!(out[0].time_ms, w.window_end);
    // One anomalous window is not yet an alert.
    assert!(alerts(&out).is_empty());
}

#[test]
fn persisting_anomaly_fires_a_warning_alert_and_resolves_on_recovery() {
    let mut d = detector(spike_only_config());
    for i in 0..30 {
        d.on_window(&window(OPENAI, i, normal_vals(i)));
    }
    let high = |i| Vals {
        latency: 3000.0,
        ..normal_vals(i)
    };
    let first = d.on_window(&window(OPENAI, 30, high(30)));
    assert!(alerts(&first).is_empty());
    let second = d.on_window(&window(OPENAI, 31, high(31)));
    assert_eq!(anomalies(&second).len(), 1);
    let fired = alerts(&second);
    assert_eq!(fired.len(), 1, "{second:?}");
    let alert = fired[0];
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.alertname, "AnomalousLatencyP95");
    assert_eq!(
        alert.dedup_key,
        "AnomalousLatencyP95/checkout/summarize/openai/gpt-4o-mini"
    );
    let starts_at = T0 + 30 * MINUTE;
    assert_eq!(alert.starts_at, starts_at);
    assert_eq!(
        alert.id,
        format!("AnomalousLatencyP95/checkout/summarize/openai/gpt-4o-mini/FIRING/{starts_at}")
    );
    assert!(
        alert.summary.starts_with(
            "checkout/summarize openai/gpt-4o-mini latency p95 3000 ms anomalously above baseline"
        ),
        "{}",
        alert.summary
    );
    assert_eq!(
        alert.labels.get("metric").map(String::as_str),
        Some("latency_p95_ms")
    );
    // Still anomalous: no repeated FIRING.
    let third = d.on_window(&window(OPENAI, 32, high(32)));
    assert_eq!(anomalies(&third).len(), 1);
    assert!(alerts(&third).is_empty());
    // Back to normal: RESOLVED with the same starts_at.
    let back = d.on_window(&window(OPENAI, 33, normal_vals(33)));
    let resolved = alerts(&back);
    assert_eq!(resolved.len(), 1, "{back:?}");
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].starts_at, starts_at);
    assert_eq!(resolved[0].ends_at, Some(T0 + 34 * MINUTE));
}

#[test]
fn favourable_anomaly_is_published_but_raises_no_alert() {
    let mut d = detector(anomaly_only_config());
    for i in 0..30 {
        d.on_window(&window(OPENAI, i, normal_vals(i)));
    }
    let mut out = Vec::new();
    for i in 30..35 {
        let cheap = Vals {
            cost_per_call: 0.0005,
            ..normal_vals(i)
        };
        out.extend(d.on_window(&window(OPENAI, i, cheap)));
    }
    let found = anomalies(&out);
    assert!(!found.is_empty());
    assert!(found
        .iter()
        .all(|a| a.metric == "cost_per_call" && a.direction == Direction::Down));
    assert!(alerts(&out).is_empty(), "{out:?}");
}

/// Box-Muller: a standard normal draw.
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[test]
fn noise_only_series_produce_no_anomaly() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut d = detector(DetectorConfig::default());
    let mut out = Vec::new();
    for i in 0..500 {
        for series in [OPENAI, ANTHROPIC] {
            let count = 1000;
            // Binomial(1000, 0.02) errors, approximately normal.
            let errors = (20.0 + 4.4 * gaussian(&mut rng)).round().max(0.0);
            let v = Vals {
                count,
                error_rate: errors / count as f64,
                latency: 1200.0 + 60.0 * gaussian(&mut rng),
                ttft: 300.0 + 15.0 * gaussian(&mut rng),
                cost_per_call: 0.002 + 0.0001 * gaussian(&mut rng),
                quality: 0.8 + 0.02 * gaussian(&mut rng),
            };
            out.extend(d.on_window(&window(series, i, v)));
        }
    }
    assert!(
        out.is_empty(),
        "{} outputs, first: {:?}",
        out.len(),
        out.first()
    );
    assert_eq!(d.stats().windows_evaluated, 1000);
}

#[test]
fn rule_breaching_for_fewer_windows_than_for_does_not_fire() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(3)]));
    let mut out = Vec::new();
    for i in 0..2 {
        out.extend(d.on_window(&window(OPENAI, i, error_rate(0.12))));
    }
    out.extend(d.on_window(&window(OPENAI, 2, error_rate(0.01))));
    for i in 3..5 {
        out.extend(d.on_window(&window(OPENAI, i, error_rate(0.12))));
    }
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn rule_fires_after_for_windows_and_resolves_when_back_to_normal() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(3)]));
    for i in 0..2 {
        assert!(d.on_window(&window(OPENAI, i, error_rate(0.12))).is_empty());
    }
    let out = d.on_window(&window(OPENAI, 2, error_rate(0.12)));
    assert_eq!(out.len(), 1, "{out:?}");
    let fired = alerts(&out)[0].clone();
    let dedup = "HighErrorRate/checkout/summarize/openai/gpt-4o-mini";
    assert_eq!(fired.status, AlertStatus::Firing);
    assert_eq!(fired.dedup_key, dedup);
    assert_eq!(fired.starts_at, T0);
    assert_eq!(fired.id, format!("{dedup}/FIRING/{T0}"));
    assert_eq!(out[0].key, dedup);
    assert_eq!(out[0].topic, LogicalTopic::Alerts);
    assert_eq!(out[0].time_ms, T0 + 3 * MINUTE);
    assert_eq!(fired.event_time, T0 + 3 * MINUTE);
    assert_eq!(fired.severity, Severity::Critical);
    assert_eq!(
        fired.summary,
        "checkout/summarize openai/gpt-4o-mini error rate 12.0% > 5.0% for 3 windows"
    );
    assert_eq!(fired.value, Some(0.12));
    assert_eq!(fired.threshold, Some(0.05));
    let labels: Vec<(&str, &str)> = fired
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("alertname", "HighErrorRate"),
            ("app", "checkout"),
            ("metric", "error_rate"),
            ("model", "gpt-4o-mini"),
            ("provider", "openai"),
            ("route", "summarize"),
            ("severity", "critical"),
        ]
    );
    assert_eq!(d.firing_alerts().count(), 1);

    let out = d.on_window(&window(OPENAI, 3, error_rate(0.01)));
    assert_eq!(out.len(), 1, "{out:?}");
    let resolved = alerts(&out)[0];
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.id, format!("{dedup}/RESOLVED/{T0}"));
    assert_eq!(resolved.starts_at, T0);
    assert_eq!(resolved.ends_at, Some(T0 + 4 * MINUTE));
    assert_eq!(resolved.value, Some(0.01));
    assert!(resolved.summary.ends_with("resolved: error rate now 1.0%"));
    assert_eq!(d.firing_alerts().count(), 0);
}

#[test]
fn firing_alert_is_not_re_emitted_every_window() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(2)]));
    let out = feed(
        &mut d,
        &(0..20)
            .map(|i| window(OPENAI, i, error_rate(0.2)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(alerts(&out)[0].status, AlertStatus::Firing);
}

#[test]
fn cooldown_prevents_immediate_re_fire() {
    // for = 1, cooldown 5 minutes.
    let mut d = detector(rules_only_config(vec![error_rate_rule(1)]));
    let fired = d.on_window(&window(OPENAI, 0, error_rate(0.2)));
    assert_eq!(alerts(&fired)[0].status, AlertStatus::Firing);
    let resolved = d.on_window(&window(OPENAI, 1, error_rate(0.01)));
    assert_eq!(alerts(&resolved)[0].status, AlertStatus::Resolved);
    let resolved_at = T0 + 2 * MINUTE;
    // Breaching again right away: suppressed while now - resolved_at < 5 minutes.
    for i in 2..6 {
        let w = window(OPENAI, i, error_rate(0.2));
        assert!(w.window_end - resolved_at < 5 * MINUTE);
        let out = d.on_window(&w);
        assert!(out.is_empty(), "window {i}: {out:?}");
    }
    // Cooldown over and still breaching: fires, starting at the first breaching window.
    let out = d.on_window(&window(OPENAI, 6, error_rate(0.2)));
    let refired = alerts(&out);
    assert_eq!(refired.len(), 1, "{out:?}");
    assert_eq!(refired[0].status, AlertStatus::Firing);
    assert_eq!(refired[0].starts_at, T0 + 2 * MINUTE);
    assert_eq!(
        refired[0].id,
        format!(
            "HighErrorRate/checkout/summarize/openai/gpt-4o-mini/FIRING/{}",
            T0 + 2 * MINUTE
        )
    );
}

#[test]
fn matchers_restrict_rules_to_their_series() {
    let rule = SloRule {
        matchers: Matchers {
            provider: Some("openai".into()),
            ..Matchers::default()
        },
        summary: Some("{alertname}: {provider} {metric} {value} {op} {threshold}".into()),
        ..error_rate_rule(1)
    };
    let mut d = detector(rules_only_config(vec![rule]));
    let out = d.on_window(&window(ANTHROPIC, 0, error_rate(0.3)));
    assert!(out.is_empty(), "{out:?}");
    let out = d.on_window(&window(OPENAI, 0, error_rate(0.3)));
    let fired = alerts(&out);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0].summary,
        "HighErrorRate: openai error_rate 30.0% > 5.0%"
    );
}

#[test]
fn quality_rule_with_less_than_comparison() {
    let rule = SloRule {
        name: "LowQuality".into(),
        metric: Metric::QualityMean,
        comparison: Comparison::Lt,
        threshold: 0.7,
        ..error_rate_rule(2)
    };
    let mut d = detector(rules_only_config(vec![rule]));
    let low = Vals {
        quality: 0.5,
        ..Vals::default()
    };
    assert!(d.on_window(&window(OPENAI, 0, low)).is_empty());
    // A window without quality scores neither breaks nor extends the run.
    let mut unscored = window(OPENAI, 1, low);
    unscored.quality_count = 0;
    assert!(d.on_window(&unscored).is_empty());
    let out = d.on_window(&window(OPENAI, 2, low));
    assert_eq!(alerts(&out).len(), 1, "{out:?}");
    assert!(alerts(&out)[0]
        .summary
        .contains("quality mean 0.500 < 0.700"));
}

#[test]
fn windows_below_min_count_are_not_evaluated() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(1)]));
    let tiny = Vals {
        count: 3,
        error_rate: 1.0 / 3.0,
        ..Vals::default()
    };
    assert!(d.on_window(&window(OPENAI, 0, tiny)).is_empty());
    assert_eq!(d.stats().below_min_count, 1);
    assert_eq!(d.stats().windows_evaluated, 0);
}

#[test]
fn revisions_and_hopping_windows_do_not_advance_state() {
    let base: Vec<WindowAggregate> = (0..40).map(|i| window(OPENAI, i, normal_vals(i))).collect();
    let mut plain = detector(DetectorConfig::default());
    let expected = feed(&mut plain, &base);

    let mut noisy = detector(DetectorConfig::default());
    let mut got = Vec::new();
    for w in &base {
        got.extend(noisy.on_window(w));
        // A revision with a wild value, and a hopping window over the same interval.
        let mut revision = w.clone();
        revision.revision = 1;
        revision.id = format!("{}/r1", w.window_id);
        revision.latency_p95_ms *= 10.0;
        revision.error_count = revision.count;
        got.extend(noisy.on_window(&revision));
        let mut hopping = w.clone();
        hopping.window_kind = WindowKind::Hopping;
        hopping.window_start = w.window_end - 5 * MINUTE;
        hopping.latency_p95_ms *= 10.0;
        got.extend(noisy.on_window(&hopping));
    }
    assert_eq!(got, expected);
    assert_eq!(noisy.stats().stale_ignored, 40);
    assert_eq!(noisy.stats().hopping_ignored, 40);
    assert_eq!(
        noisy.stats().windows_evaluated,
        plain.stats().windows_evaluated
    );

    // A revision whose revision 0 never arrived is evaluated like a first emission.
    let mut late_first = window(OPENAI, 40, normal_vals(40));
    late_first.revision = 2;
    noisy.on_window(&late_first);
    assert_eq!(noisy.stats().windows_evaluated, 41);
}

/// A scenario touching every output kind: warm-up, anomalies, anomaly and rule alerts, resolves,
/// two series.
fn scenario() -> Vec<WindowAggregate> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut windows = Vec::new();
    for i in 0..80 {
        for series in [OPENAI, ANTHROPIC] {
            let mut v = normal_vals(i);
            v.latency += 30.0 * gaussian(&mut rng);
            if series == OPENAI && (40..46).contains(&i) {
                v.error_rate = 0.15;
                v.latency = 4000.0;
            }
            windows.push(window(series, i, v));
        }
    }
    windows
}

#[test]
fn same_input_twice_gives_identical_outputs() {
    let input = scenario();
    let mut a = detector(DetectorConfig::default());
    let mut b = detector(DetectorConfig::default());
    let out_a = feed(&mut a, &input);
    let out_b = feed(&mut b, &input);
    assert!(!anomalies(&out_a).is_empty());
    assert!(alerts(&out_a)
        .iter()
        .any(|a| a.alertname == "HighErrorRate" && a.status == AlertStatus::Firing));
    assert!(alerts(&out_a)
        .iter()
        .any(|a| a.alertname == "HighErrorRate" && a.status == AlertStatus::Resolved));
    assert_eq!(out_a, out_b);
    let snap_a = a.snapshot().unwrap_or_default();
    let snap_b = b.snapshot().unwrap_or_default();
    assert!(!snap_a.is_empty());
    assert_eq!(snap_a, snap_b);
    // Output ids are unique.
    let mut ids: Vec<&str> = out_a.iter().map(|o| o.id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn snapshot_and_restore_continue_exactly() {
    let input = scenario();
    let mut whole = detector(DetectorConfig::default());
    let expected = feed(&mut whole, &input);

    let (head, tail) = input.split_at(input.len() / 2 + 3);
    let mut first = detector(DetectorConfig::default());
    let mut got = feed(&mut first, head);
    let bytes = match first.snapshot() {
        Ok(b) => b,
        Err(e) => panic!("snapshot: {e}"),
    };
    let mut second = detector(DetectorConfig::default());
    if let Err(e) = second.restore(&bytes) {
        panic!("restore: {e}");
    }
    got.extend(feed(&mut second, tail));
    assert_eq!(got, expected);
    assert_eq!(second.stats(), whole.stats());
}

#[test]
fn restore_rejects_foreign_snapshots_and_keeps_state() {
    let mut d = detector(DetectorConfig::default());
    feed(&mut d, &scenario()[..20]);
    let before = d.snapshot().unwrap_or_default();
    assert!(matches!(
        d.restore(b"not json"),
        Err(SnapshotError::Decode(_))
    ));
    let wrong_version =
        String::from_utf8_lossy(&before).replacen("\"version\":1", "\"version\":99", 1);
    assert!(matches!(
        d.restore(wrong_version.as_bytes()),
        Err(SnapshotError::Version { found: 99, .. })
    ));
    let mut other = DetectorConfig::default();
    other.baseline.name = "other-detector".into();
    let mut o = detector(other);
    assert!(matches!(
        o.restore(&before),
        Err(SnapshotError::DetectorMismatch { .. })
    ));
    assert_eq!(d.snapshot().unwrap_or_default(), before);
}

#[test]
fn idle_series_is_forgotten_and_its_alerts_resolve() {
    let config = DetectorConfig {
        idle_series_ttl_ms: 10 * MINUTE,
        ..rules_only_config(vec![error_rate_rule(1)])
    };
    let mut d = detector(config);
    let fired = d.on_window(&window(ANTHROPIC, 0, error_rate(0.5)));
    assert_eq!(alerts(&fired).len(), 1);
    // Only OpenAI keeps sending windows; Anthropic's alert resolves once it is idle too long.
    let mut out = Vec::new();
    for i in 1..=11 {
        out.extend(d.on_window(&window(OPENAI, i, error_rate(0.01))));
    }
    let resolved = alerts(&out);
    assert_eq!(resolved.len(), 1, "{out:?}");
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(
        resolved[0].dedup_key,
        "HighErrorRate/checkout/summarize/anthropic/claude-3-5-haiku"
    );
    assert!(resolved[0]
        .summary
        .ends_with("resolved: no windows for over 10 min"));
    assert_eq!(d.series_count(), 1);
    assert_eq!(d.stats().series_evicted, 1);
}

#[test]
fn removed_rule_resolves_after_restore() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(1)]));
    assert_eq!(d.on_window(&window(OPENAI, 0, error_rate(0.5))).len(), 1);
    let bytes = d.snapshot().unwrap_or_default();
    let mut without = detector(rules_only_config(Vec::new()));
    if let Err(e) = without.restore(&bytes) {
        panic!("restore: {e}");
    }
    let out = without.on_window(&window(OPENAI, 1, error_rate(0.5)));
    let resolved = alerts(&out);
    assert_eq!(resolved.len(), 1, "{out:?}");
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
}

#[test]
fn processor_reads_windows_and_ignores_other_events() {
    let mut d = detector(rules_only_config(vec![error_rate_rule(1)]));
    assert_eq!(Processor::name(&d), "detector");
    assert_eq!(d.inputs(), vec![LogicalTopic::Windows]);
    let input = |event| Input {
        topic: LogicalTopic::Windows,
        partition: 0,
        offset: 0,
        id: "x".into(),
        source: "llmopt/aggregator".into(),
        time_ms: None,
        event,
    };
    let out = d.process(&input(AnyEvent::WindowAggregate(window(
        OPENAI,
        0,
        error_rate(0.5),
    ))));
    assert_eq!(out.len(), 1);
    let out = d.process(&input(AnyEvent::Anomaly(llmopt_events::samples::anomaly())));
    assert!(out.is_empty());
    assert_eq!(d.stats().other_events_ignored, 1);
}

#[test]
fn anomaly_alerts_can_be_disabled() {
    let config = DetectorConfig {
        anomaly_alerts: AnomalyAlertPolicy {
            enabled: false,
            ..AnomalyAlertPolicy::default()
        },
        ..anomaly_only_config()
    };
    let mut d = detector(config);
    let mut out = Vec::new();
    for i in 0..40 {
        let v = if i >= 30 {
            Vals {
                latency: 5000.0,
                ..normal_vals(i)
            }
        } else {
            normal_vals(i)
        };
        out.extend(d.on_window(&window(OPENAI, i, v)));
    }
    assert!(!anomalies(&out).is_empty());
    assert!(alerts(&out).is_empty());
}

/// Noisy windows of `count` calls around the defaults: what a real series looks like.
fn noisy_vals(rng: &mut ChaCha8Rng, count: i64) -> Vals {
    let n = count as f64;
    let p = 0.01;
    let errors = (n * p + (n * p * (1.0 - p)).sqrt() * gaussian(rng))
        .round()
        .max(0.0);
    Vals {
        count,
        error_rate: errors / n,
        latency: 1200.0 * (0.05 * gaussian(rng)).exp(),
        ttft: 300.0 * (0.05 * gaussian(rng)).exp(),
        cost_per_call: 0.002 * (0.6 / n.sqrt() * gaussian(rng)).exp(),
        quality: 0.8 + 0.15 / n.sqrt() * gaussian(rng),
    }
}

fn firing_names(out: &[Output]) -> Vec<String> {
    alerts(out)
        .into_iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .map(|a| a.alertname.clone())
        .collect()
}

#[test]
fn a_cost_step_below_2x_raises_a_level_shift_alert() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut d = detector(anomaly_only_config());
    let mut quiet = Vec::new();
    for i in 0..240 {
        quiet.extend(d.on_window(&window(OPENAI, i, noisy_vals(&mut rng, 200))));
    }
    assert!(
        firing_names(&quiet).is_empty(),
        "{:?}",
        firing_names(&quiet)
    );
    let mut fired_at = None;
    for i in 240..260 {
        let mut v = noisy_vals(&mut rng, 200);
        v.cost_per_call *= 1.3;
        let out = d.on_window(&window(OPENAI, i, v));
        if firing_names(&out)
            .iter()
            .any(|n| n == "CostPerCallLevelShift")
        {
            fired_at = Some(i - 240);
            let alert = alerts(&out)
                .into_iter()
                .find(|a| a.alertname == "CostPerCallLevelShift")
                .cloned();
            let labels = alert.map(|a| a.labels).unwrap_or_default();
            assert_eq!(
                labels.get("detector").map(String::as_str),
                Some("cusum-ewma-shift")
            );
            assert!(anomalies(&out)
                .iter()
                .any(|a| a.detector == "cusum-ewma-shift"));
            break;
        }
    }
    assert!(
        fired_at.is_some_and(|w| w <= 4),
        "fired after {fired_at:?} windows"
    );
}

#[test]
fn concurrent_incidents_on_one_series_each_raise_their_own_alert() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut d = detector(anomaly_only_config());
    for i in 0..240 {
        d.on_window(&window(OPENAI, i, noisy_vals(&mut rng, 200)));
    }
    let mut fired = std::collections::BTreeSet::new();
    for i in 240..250 {
        let mut v = noisy_vals(&mut rng, 200);
        v.latency *= 2.5;
        v.cost_per_call *= 1.5;
        fired.extend(firing_names(&d.on_window(&window(OPENAI, i, v))));
    }
    let metrics_alerted: Vec<&str> = ["LatencyP95", "CostPerCall"]
        .into_iter()
        .filter(|m| fired.iter().any(|n| n.contains(m)))
        .collect();
    assert_eq!(metrics_alerted, ["LatencyP95", "CostPerCall"], "{fired:?}");
}

#[test]
fn a_slow_quality_drift_alerts_without_any_quality_rule() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut d = detector(anomaly_only_config());
    for i in 0..240 {
        d.on_window(&window(OPENAI, i, noisy_vals(&mut rng, 100)));
    }
    // Falls by 0.05 an hour: 0.03 after 36 windows; alerted within the following hour at most.
    let mut fired_at = None;
    for m in 1..=96 {
        let mut v = noisy_vals(&mut rng, 100);
        v.quality -= 0.05 * m as f64 / 60.0;
        let out = d.on_window(&window(OPENAI, 240 + m, v));
        if firing_names(&out)
            .iter()
            .any(|n| n.starts_with("QualityMean"))
        {
            fired_at = Some(m);
            break;
        }
    }
    assert!(
        fired_at.is_some_and(|m| m <= 60),
        "fired after {fired_at:?} windows"
    );
}

/// Budgets come from the configuration file, count the windows the core reads and publish their
/// alerts on the alert topic keyed by dedup key; a restored snapshot keeps the period's spend.
#[test]
fn budgets_from_the_config_file_alert_through_the_core_and_survive_a_restore() {
    let config: DetectorConfig = toml::from_str(
        r#"
        rules = []
        metrics = []
        [[budgets]]
        name = "checkout-daily"
        app = "checkout"
        period = "day"
        limit_usd = 11.0
        [[budgets]]
        name = "acme-monthly"
        tenant = "acme"
        period = "month"
        limit_usd = 1000.0
        "#,
    )
    .expect("config");
    assert_eq!(config.budgets[0].thresholds, vec![0.85, 0.95]);
    let mut d = detector(config.clone());
    // $2 a window (1000 calls at $0.002): past 85 % of $11 ($9.35) with the fifth window.
    let first: Vec<WindowAggregate> = (0..4).map(|i| window(OPENAI, i, Vals::default())).collect();
    assert!(alerts(&feed(&mut d, &first)).is_empty());
    let mut restored = detector(config);
    restored
        .restore(&d.snapshot().expect("snapshot"))
        .expect("restore");
    let out = feed(&mut restored, &[window(OPENAI, 4, Vals::default())]);
    let fired = alerts(&out);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].alertname, "BudgetThreshold");
    assert_eq!(
        fired[0].dedup_key,
        "BudgetThreshold/budget/checkout-daily/85"
    );
    assert!((fired[0].value.unwrap_or_default() - 10.0).abs() < 1e-9);
    let output = out
        .iter()
        .find(|o| o.topic == LogicalTopic::Alerts)
        .expect("on the alert topic");
    assert_eq!(output.key, fired[0].dedup_key);
    // A budget with a `/` in its name would break dedup keys.
    let bad: Result<DetectorConfig, _> = toml::from_str(
        r#"
        [[budgets]]
        name = "a/b"
        period = "day"
        limit_usd = 1.0
        "#,
    );
    assert!(Detector::new(bad.expect("parses")).is_err());
}

/// Firing cost-per-call alerts of a week of one series whose cost per call rises by half every
/// night from 01:00 to 02:00 (a tenant's batch job with long prompts), per day; on the last day
/// a real cost step of x1.6 comes on top of the job at 01:00.
fn nightly_job_cost_alerts(seasonal: bool) -> Vec<usize> {
    let mut config = anomaly_only_config();
    config.seasonal.enabled = seasonal;
    let mut d = detector(config);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let days = 8;
    let mut per_day = vec![0; days];
    for i in 0..(days as i64) * 24 * 60 {
        let day = (i / (24 * 60)) as usize;
        let minute_of_day = i % (24 * 60);
        let job = (60..120).contains(&minute_of_day);
        let step = day == days - 1 && job;
        let noise = 0.03 * gaussian(&mut rng);
        let cost = 0.002 * noise.exp() * if job { 1.5 } else { 1.0 } * if step { 1.6 } else { 1.0 };
        let v = Vals {
            count: 200,
            cost_per_call: cost,
            ..normal_vals(i)
        };
        for alert in alerts(&d.on_window(&window(OPENAI, i, v))) {
            if alert.status == AlertStatus::Firing && alert.alertname.starts_with("CostPerCall") {
                per_day[day] += 1;
            }
        }
    }
    per_day
}

#[test]
fn a_nightly_pattern_stops_alerting_once_the_seasonal_profile_learned_it() {
    let without = nightly_job_cost_alerts(false);
    let with = nightly_job_cost_alerts(true);
    println!("cost alerts per day, without a profile {without:?}, with {with:?}");
    // Unseasoned, every night's job pages (day 0 is the warm-up's day).
    assert!(
        without[1..7].iter().all(|n| *n >= 1),
        "without a profile: {without:?}"
    );
    // The profile holds the job's hour from the fifth night on (a trailing day, then three
    // nights of history), and a real step on top of the job still pages.
    assert!(
        with[4..7].iter().all(|n| *n == 0),
        "with a profile: {with:?}"
    );
    assert!(with[7] >= 1, "the step on the last night: {with:?}");
}
