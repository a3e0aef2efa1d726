//! `llmopt bench detect`: how well the detector finds incidents, over many random scenarios.
//!
//! Each scenario is drawn from the seed: zero to three incidents (error bursts, latency steps
//! after a config change, cost steps, quality drifts) on random models and routes of the default
//! fleet (with office-hours traffic: daily cycles, weekends, latency rising with load, unless
//! asked for flat traffic), with magnitudes from barely visible to severe (x1.2 to x5 for steps and bursts, 0.02 to
//! 0.3 per hour for drifts), durations from 3 minutes to hours and random start times, so they
//! overlap at times and leave long quiet stretches. The first 90 minutes are quiet, so every
//! series has a baseline.
//!
//! The calls go through the pipeline's cores in this process: priced as ingest prices them, cut
//! into tumbling windows by the aggregator core, judged by the detector core with the demo's
//! configuration. Decisions are left out, so routing stays as it is and every alert can be
//! attributed against the ground truth: an alert belongs to an incident when it is on the
//! incident's route, or on the incident's model on any route, and starts between the incident's
//! start and 15 minutes after its end. Every other firing alert is false.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use llmopt_aggregator::Aggregator;
use llmopt_detector::Detector;
use llmopt_events::{Alert, AlertStatus, AnyEvent, WindowKind};
use llmopt_runtime::{Input, Processor};
use llmopt_sim::{
    FleetSpec, GroundTruth, Incident, IncidentKind, NoisyTenant, Scenario, SimEvent, TrafficShape,
};
use llmopt_transport::LogicalTopic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::AppConfig;
use crate::demo::{self, DemoOptions};

/// Quiet lead-in before the first incident, so that baselines are learned.
const WARMUP_S: u64 = 90 * 60;
/// How long after an incident ends its alerts still belong to it (resolution lag).
const GRACE_MS: i64 = 15 * 60_000;
const MINUTE_MS: i64 = 60_000;
/// False alerts quoted in the report.
const FALSE_ALERT_EXAMPLES: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct DetectBenchOptions {
    /// Scenarios to run.
    pub scenarios: usize,
    /// Seed of the scenario draws (and of each scenario's fleet).
    pub seed: u64,
    /// Simulated hours per scenario.
    pub hours: f64,
    /// How traffic varies over the day and week.
    pub traffic: TrafficShape,
    /// Tenants whose jobs and bursts come on top of the traffic (not incidents).
    pub noisy_tenants: Vec<NoisyTenant>,
}

/// One incident as drawn, and what the detector made of it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentResult {
    /// Scenario number.
    pub scenario: usize,
    /// `error_burst`, `latency_step`, `cost_step` or `quality_drift`.
    pub kind: &'static str,
    /// Factor for bursts and steps, drop per hour for drifts.
    pub magnitude: f64,
    /// What it hit: `provider/model`, or `app/route` for a latency step.
    pub target: String,
    /// Minutes it lasts (`None`: until the end).
    pub duration_min: Option<f64>,
    /// Minutes from its start to the first attributable alert (`None`: missed).
    pub first_alert_min: Option<f64>,
    /// For drifts: minutes from the cumulative fall reaching 0.03 to the first alert.
    pub after_fall_003_min: Option<f64>,
}

/// Recall and time to first alert of one kind and magnitude bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BucketSummary {
    /// Incident kind.
    pub kind: &'static str,
    /// Magnitude range, as printed.
    pub bucket: String,
    /// Incidents.
    pub incidents: usize,
    /// Incidents with an attributable alert.
    pub detected: usize,
    /// `detected / incidents`.
    pub recall: f64,
    /// Median minutes (= windows) to the first alert, over detected incidents.
    pub median_first_alert_windows: Option<f64>,
    /// 90th percentile of the same.
    pub p90_first_alert_windows: Option<f64>,
}

/// Recall and median time to first alert of one class of incidents.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// Which incidents.
    pub class: &'static str,
    /// How many were drawn.
    pub incidents: usize,
    /// Share found (for drifts: found within 60 minutes of the fall reaching 0.03).
    pub recall: f64,
    /// Median minutes (= windows) to the first alert of those found.
    pub median_first_alert_windows: Option<f64>,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct DetectBenchReport {
    /// Scenarios run.
    pub scenarios: usize,
    /// The seed.
    pub seed: u64,
    /// Simulated fleet-days (all scenarios).
    pub fleet_days: f64,
    /// The classes the bars are about.
    pub headlines: Vec<Headline>,
    /// Per kind and magnitude bucket.
    pub buckets: Vec<BucketSummary>,
    /// Firing alerts attributable to an incident.
    pub true_alerts: usize,
    /// Firing alerts attributable to none.
    pub false_alerts: usize,
    /// `false_alerts / fleet_days`.
    pub false_alerts_per_fleet_day: f64,
    /// False alerts by day of their scenario (day 0 holds the warm-up): how a detector learning
    /// the fleet's days (the seasonal profile) grows quieter over scenarios of several days.
    pub false_alerts_by_scenario_day: Vec<usize>,
    /// `true_alerts / (true_alerts + false_alerts)`.
    pub precision: f64,
    /// The false alerts' names, with counts.
    pub false_alert_names: BTreeMap<String, usize>,
    /// The first false alerts, as `scenario N, minute M: summary`, to look into.
    pub false_alert_examples: Vec<String>,
    /// Series points scored (windows x metrics).
    pub points: u64,
    /// Detector core time per series point, in nanoseconds.
    pub detector_ns_per_point: f64,
    /// Every incident.
    pub incidents: Vec<IncidentResult>,
}

/// An incident drawn for a scenario, with what the report needs to know about it.
struct Drawn {
    incident: Incident,
    kind: &'static str,
    magnitude: f64,
}

/// Log-uniform draw in [low, high].
fn log_uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    (low.ln() + rng.gen::<f64>() * (high.ln() - low.ln())).exp()
}

/// Zero to three random incidents on `fleet` over `duration_s`.
fn draw_incidents(rng: &mut ChaCha8Rng, fleet: &FleetSpec, duration_s: u64) -> Vec<Drawn> {
    let routes: Vec<(String, String)> = fleet
        .routes()
        .map(|(a, r)| (a.name.clone(), r.name.clone()))
        .collect();
    let mut models: Vec<(String, String, f64)> = Vec::new();
    for (_, route) in fleet.routes() {
        for t in route.targets.iter().filter(|t| t.weight > 0.0) {
            let base = fleet
                .catalogue
                .get(&t.provider, &t.model)
                .map_or(0.01, |m| m.error_rate);
            if !models
                .iter()
                .any(|(p, m, _)| *p == t.provider && *m == t.model)
            {
                models.push((t.provider.clone(), t.model.clone(), base));
            }
        }
    }
    let count = match rng.gen_range(0..10) {
        0..=1 => 0,
        2..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let latest = duration_s.saturating_sub(30 * 60).max(WARMUP_S + 60);
    (0..count)
        .map(|i| {
            let start_s = rng.gen_range(WARMUP_S..latest);
            let duration_s = log_uniform(rng, 3.0 * 60.0, 4.0 * 3600.0) as u64;
            let (provider, model, base) = models[rng.gen_range(0..models.len())].clone();
            let name = format!("incident-{i}");
            let (kind, magnitude, incident) = match rng.gen_range(0..4) {
                0 => {
                    let factor = log_uniform(rng, 1.2, 5.0);
                    let error_rate = (base.max(0.002) * factor).min(0.95);
                    (
                        "error_burst",
                        factor,
                        IncidentKind::ProviderErrorBurst {
                            provider,
                            model,
                            start_s,
                            duration_s,
                            error_rate,
                        },
                    )
                }
                1 => {
                    let factor = log_uniform(rng, 1.2, 5.0);
                    let (app, route) = routes[rng.gen_range(0..routes.len())].clone();
                    (
                        "latency_step",
                        factor,
                        IncidentKind::LatencyRegressionAfterConfigChange {
                            app,
                            route,
                            at_s: start_s,
                            latency_factor: factor,
                        },
                    )
                }
                2 => {
                    let factor = log_uniform(rng, 1.2, 5.0);
                    (
                        "cost_step",
                        factor,
                        IncidentKind::CostSpike {
                            provider,
                            model,
                            start_s,
                            duration_s,
                            factor,
                        },
                    )
                }
                _ => {
                    let drop = log_uniform(rng, 0.02, 0.3);
                    (
                        "quality_drift",
                        drop,
                        IncidentKind::QualityDrift {
                            provider,
                            model,
                            start_s,
                            drop_per_hour: drop,
                        },
                    )
                }
            };
            Drawn {
                incident: Incident {
                    name,
                    kind: incident,
                },
                kind,
                magnitude,
            }
        })
        .collect()
}

/// Whether `alert` can be caused by `truth` (see the module documentation).
fn attributable(truth: &GroundTruth, alert: &Alert) -> bool {
    let label = |name: &str| alert.labels.get(name).map_or("", String::as_str);
    let on_model = truth.model.as_deref().is_some_and(|m| m == label("model"))
        && truth
            .provider
            .as_deref()
            .is_none_or(|p| p == label("provider"));
    let on_route = truth.app.as_deref().is_none_or(|a| a == label("app"))
        && truth.route.as_deref().is_none_or(|r| r == label("route"));
    let in_time = alert.starts_at + MINUTE_MS >= truth.start_ms
        && truth
            .end_ms
            .is_none_or(|end| alert.starts_at <= end + GRACE_MS);
    (on_model || on_route) && in_time
}

/// The firing alerts of one scenario, series points scored and detector time.
struct ScenarioRun {
    firing: Vec<Alert>,
    points: u64,
    detector_time: Duration,
    truth: Vec<GroundTruth>,
    start_ms: i64,
}

fn run_scenario(
    base: &AppConfig,
    fleet: &FleetSpec,
    scenario: Scenario,
    seed: u64,
    start_ms: i64,
) -> anyhow::Result<ScenarioRun> {
    let options = DemoOptions {
        seed,
        scenario,
        step_s: 60,
        speed: 0.0,
        duration_s: None,
        max_rate: None,
    };
    let (mut config, mut sim) =
        demo::prepare_fleet(base.clone(), &options, fleet.clone(), start_ms)?;
    // The detector reads tumbling windows only.
    config.aggregator.hopping = None;
    let metrics = config.detector.metrics.len() as u64;
    let mut aggregator = Aggregator::new(config.aggregator.clone())
        .map_err(|e| anyhow::anyhow!("aggregator configuration: {e}"))?;
    let mut detector = Detector::new(config.detector.clone())
        .map_err(|e| anyhow::anyhow!("detector configuration: {e}"))?;
    let prices = config.ingest.prices.clone();
    let start_ms = sim.start_ms();
    let end_ms = sim.end_ms();
    let mut run = ScenarioRun {
        firing: Vec::new(),
        points: 0,
        detector_time: Duration::ZERO,
        truth: sim.ground_truth(),
        start_ms,
    };
    let mut offset = 0_i64;
    let mut t = start_ms;
    while t < end_ms {
        t = (t + MINUTE_MS).min(end_ms);
        for event in sim.advance(t, &mut |_, _| None) {
            let SimEvent::Call {
                mut call,
                id,
                source,
            } = event
            else {
                continue;
            };
            if call.cost_usd.is_none() {
                call.cost_usd = prices.price(
                    &call.gen_ai_provider_name,
                    &call.gen_ai_request_model,
                    call.gen_ai_usage_input_tokens,
                    call.gen_ai_usage_output_tokens,
                );
            }
            let input = Input {
                topic: LogicalTopic::Telemetry,
                partition: 0,
                offset,
                id,
                source,
                time_ms: Some(call.event_time),
                event: AnyEvent::LlmCall(call),
            };
            offset += 1;
            if !aggregator.admit(&input) {
                continue;
            }
            for output in aggregator.process(&input) {
                let AnyEvent::WindowAggregate(window) = &output.event else {
                    continue;
                };
                if window.window_kind != WindowKind::Tumbling {
                    continue;
                }
                let started = Instant::now();
                let outs = detector.on_window(window);
                run.detector_time += started.elapsed();
                run.points += metrics;
                run.firing
                    .extend(outs.into_iter().filter_map(|o| match o.event {
                        AnyEvent::Alert(a) if a.status == AlertStatus::Firing => Some(a),
                        _ => None,
                    }));
            }
        }
    }
    Ok(run)
}

/// Which noisy tenants the benchmark's fleet has (see [`llmopt_sim::tenants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoisyTenants {
    /// None: the apps' traffic only.
    None,
    /// umbrella (support-bot and search) bursts at random hours: volume, not incidents.
    Bursty,
    /// Also globex's nightly batch job (checkout and search, 01:00 UTC, long prompts: their cost
    /// per call doubles for an hour every night), which only a detector with a few days of
    /// history can know: use it with scenarios of several days (`--hours 168`).
    All,
}

/// The noisy tenants of `which`.
pub fn noisy_tenants(which: NoisyTenants) -> Vec<NoisyTenant> {
    match which {
        NoisyTenants::None => Vec::new(),
        NoisyTenants::Bursty => vec![NoisyTenant::bursty("umbrella")],
        NoisyTenants::All => vec![
            NoisyTenant::nightly_batch_job("globex"),
            NoisyTenant::bursty("umbrella"),
        ],
    }
}

/// Runs the benchmark; `progress` hears about each finished scenario.
pub fn run(
    base: &AppConfig,
    options: &DetectBenchOptions,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<DetectBenchReport> {
    let fleet = FleetSpec {
        traffic: options.traffic,
        noisy_tenants: options.noisy_tenants.clone(),
        ..FleetSpec::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let duration_s = (options.hours * 3600.0)
        .round()
        .max(WARMUP_S as f64 + 3600.0) as u64;
    let mut incidents = Vec::new();
    let mut true_alerts = 0;
    let mut false_alert_names: BTreeMap<String, usize> = BTreeMap::new();
    let mut false_alert_examples = Vec::new();
    let mut false_by_day: Vec<usize> = Vec::new();
    let mut points = 0_u64;
    let mut detector_time = Duration::ZERO;
    for index in 0..options.scenarios {
        let drawn = draw_incidents(&mut rng, &fleet, duration_s);
        let scenario = Scenario {
            name: format!("bench-{index}"),
            description: String::new(),
            duration_s,
            incidents: drawn.iter().map(|d| d.incident.clone()).collect(),
        };
        let seed = options
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(index as u64);
        // Any hour of any day of the week, so daily cycles and weekends are all seen.
        let start_ms = demo::SIM_START_MS + rng.gen_range(0..7 * 24) * 3_600_000;
        let run = run_scenario(base, &fleet, scenario, seed, start_ms)
            .with_context(|| format!("scenario {index} (seed {seed})"))?;
        points += run.points;
        detector_time += run.detector_time;
        for alert in &run.firing {
            if run.truth.iter().any(|t| attributable(t, alert)) {
                true_alerts += 1;
            } else {
                *false_alert_names
                    .entry(alert.alertname.clone())
                    .or_default() += 1;
                let day =
                    ((alert.starts_at - run.start_ms).max(0) / (24 * 60 * MINUTE_MS)) as usize;
                if false_by_day.len() <= day {
                    false_by_day.resize(day + 1, 0);
                }
                false_by_day[day] += 1;
                if false_alert_examples.len() < FALSE_ALERT_EXAMPLES {
                    false_alert_examples.push(format!(
                        "scenario {index}, minute {}: {}",
                        (alert.starts_at - run.start_ms) / MINUTE_MS,
                        alert.summary
                    ));
                }
            }
        }
        for d in &drawn {
            let truths: Vec<&GroundTruth> = run
                .truth
                .iter()
                .filter(|t| t.name == d.incident.name)
                .collect();
            let start_ms = truths.first().map_or(run.start_ms, |t| t.start_ms);
            let first = run
                .firing
                .iter()
                .filter(|a| truths.iter().any(|t| attributable(t, a)))
                .map(|a| a.event_time)
                .min();
            let first_alert_min = first.map(|f| (f - start_ms) as f64 / MINUTE_MS as f64);
            let after_fall_003_min = match &d.incident.kind {
                IncidentKind::QualityDrift { drop_per_hour, .. } => {
                    first_alert_min.map(|m| m - 0.03 / drop_per_hour * 60.0)
                }
                _ => None,
            };
            let target = match &d.incident.kind {
                IncidentKind::LatencyRegressionAfterConfigChange { app, route, .. } => {
                    format!("{app}/{route}")
                }
                IncidentKind::ProviderErrorBurst {
                    provider, model, ..
                }
                | IncidentKind::CostSpike {
                    provider, model, ..
                }
                | IncidentKind::QualityDrift {
                    provider, model, ..
                } => format!("{provider}/{model}"),
                IncidentKind::SelfHostedTooExpensive { model, .. } => model.clone(),
            };
            incidents.push(IncidentResult {
                scenario: index,
                kind: d.kind,
                magnitude: d.magnitude,
                target,
                duration_min: d.incident.duration_s().map(|s| s as f64 / 60.0),
                first_alert_min,
                after_fall_003_min,
            });
        }
        progress(index);
    }
    let false_alerts: usize = false_alert_names.values().sum();
    let fleet_days = options.scenarios as f64 * duration_s as f64 / 86_400.0;
    Ok(DetectBenchReport {
        scenarios: options.scenarios,
        seed: options.seed,
        fleet_days,
        headlines: headlines(&incidents),
        buckets: summarise(&incidents),
        true_alerts,
        false_alerts,
        false_alerts_per_fleet_day: false_alerts as f64 / fleet_days.max(f64::MIN_POSITIVE),
        false_alerts_by_scenario_day: false_by_day,
        precision: true_alerts as f64 / (true_alerts + false_alerts).max(1) as f64,
        false_alert_names,
        false_alert_examples,
        points,
        detector_ns_per_point: detector_time.as_nanos() as f64 / points.max(1) as f64,
        incidents,
    })
}

fn headlines(incidents: &[IncidentResult]) -> Vec<Headline> {
    let class = |name: &'static str,
                 select: &dyn Fn(&IncidentResult) -> bool,
                 found: &dyn Fn(&IncidentResult) -> bool| {
        let members: Vec<&IncidentResult> = incidents.iter().filter(|i| select(i)).collect();
        let mut times: Vec<f64> = members
            .iter()
            .filter(|i| found(i))
            .filter_map(|i| i.first_alert_min)
            .collect();
        times.sort_by(f64::total_cmp);
        Headline {
            class: name,
            incidents: members.len(),
            recall: times.len() as f64 / members.len().max(1) as f64,
            median_first_alert_windows: percentile(&times, 0.5),
        }
    };
    let alerted = |i: &IncidentResult| i.first_alert_min.is_some();
    vec![
        class(
            "latency and cost steps >= 1.5x",
            &|i| matches!(i.kind, "latency_step" | "cost_step") && i.magnitude >= 1.5,
            &alerted,
        ),
        class(
            "error bursts >= 3x lasting >= 5 min",
            &|i| {
                i.kind == "error_burst"
                    && i.magnitude >= 3.0
                    && i.duration_min.is_some_and(|d| d >= 5.0)
            },
            &alerted,
        ),
        class(
            "quality drifts >= 0.05/h, within 60 min of a 0.03 fall",
            &|i| i.kind == "quality_drift" && i.magnitude >= 0.05,
            &|i| i.after_fall_003_min.is_some_and(|m| m <= 60.0),
        ),
    ]
}

/// Magnitude buckets per kind: factors for bursts and steps, drops per hour for drifts.
fn bucket_edges(kind: &str) -> &'static [f64] {
    if kind == "quality_drift" {
        &[0.02, 0.05, 0.1, 0.3]
    } else {
        &[1.2, 1.5, 2.0, 3.0, 5.0]
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied()
}

fn summarise(incidents: &[IncidentResult]) -> Vec<BucketSummary> {
    let mut out = Vec::new();
    for kind in ["error_burst", "latency_step", "cost_step", "quality_drift"] {
        let edges = bucket_edges(kind);
        for pair in edges.windows(2) {
            let (low, high) = (pair[0], pair[1]);
            let last = high == edges[edges.len() - 1];
            let members: Vec<&IncidentResult> = incidents
                .iter()
                .filter(|i| i.kind == kind)
                .filter(|i| i.magnitude >= low && (i.magnitude < high || last))
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut times: Vec<f64> = members.iter().filter_map(|i| i.first_alert_min).collect();
            times.sort_by(f64::total_cmp);
            out.push(BucketSummary {
                kind,
                bucket: format!("{low}-{high}"),
                incidents: members.len(),
                detected: times.len(),
                recall: times.len() as f64 / members.len() as f64,
                median_first_alert_windows: percentile(&times, 0.5),
                p90_first_alert_windows: percentile(&times, 0.9),
            });
        }
    }
    out
}

/// The report as a table for people.
pub fn render(report: &DetectBenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} scenarios (seed {}), {:.1} simulated fleet-days",
        report.scenarios, report.seed, report.fleet_days
    );
    for h in &report.headlines {
        let _ = writeln!(
            out,
            "{:<56} {:>4} incidents, recall {:>5.1}%, median first alert {} windows",
            h.class,
            h.incidents,
            h.recall * 100.0,
            h.median_first_alert_windows
                .map_or("-".to_string(), |m| format!("{m:.0}"))
        );
    }
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:>9} {:>8} {:>7} {:>12} {:>9}",
        "kind", "magnitude", "incidents", "detected", "recall", "median(win)", "p90(win)"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for b in &report.buckets {
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:>9} {:>8} {:>6.0}% {:>12} {:>9}",
            b.kind,
            b.bucket,
            b.incidents,
            b.detected,
            b.recall * 100.0,
            opt(b.median_first_alert_windows),
            opt(b.p90_first_alert_windows)
        );
    }
    let _ = writeln!(
        out,
        "alerts: {} true, {} false ({:.2} per fleet-day), precision {:.1}%",
        report.true_alerts,
        report.false_alerts,
        report.false_alerts_per_fleet_day,
        report.precision * 100.0
    );
    if report.false_alerts_by_scenario_day.len() > 1 {
        let days: Vec<String> = report
            .false_alerts_by_scenario_day
            .iter()
            .map(|n| n.to_string())
            .collect();
        let _ = writeln!(out, "false alerts by scenario day: {}", days.join(" "));
    }
    if !report.false_alert_names.is_empty() {
        let names: Vec<String> = report
            .false_alert_names
            .iter()
            .map(|(n, c)| format!("{n} x{c}"))
            .collect();
        let _ = writeln!(out, "false alerts by name: {}", names.join(", "));
        for example in &report.false_alert_examples {
            let _ = writeln!(out, "  {example}");
        }
    }
    let _ = writeln!(
        out,
        "detector core: {:.0} ns per series point over {} points",
        report.detector_ns_per_point, report.points
    );
    out
}
