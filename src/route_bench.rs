//! `llmopt bench route`: what the router does to a fleet's cost and quality, against baselines.
//!
//! The default fleet runs a quiet stretch (no incidents) through the whole loop in this process
//! (ingest, aggregator, detector, decision in auto mode, actuator), with every route optimised
//! by the constrained Thompson sampling router: allowed models are the route's choices, the
//! quality floor a share (95 % by default) of its most capable model's quality. The simulator
//! prices every successful call three times with the same tokens: as served, on the route's
//! most capable model (baseline 1: always the most capable), and under the fleet's initial
//! routing (baseline 2: the static routing). Quality is the expected score of the model that
//! served (its mean on the route), so the comparison is not blurred by feedback sampling.

use std::collections::BTreeMap;

use llmopt_events::{DecisionState, Strategy};
use llmopt_sim::{FleetSpec, Incident, RouteLedger, Scenario};
use serde::Serialize;

use crate::config::AppConfig;
use crate::demo::{self, policy, DemoOptions, SIM_START_MS};

/// What to run.
#[derive(Debug, Clone)]
pub struct RouteBenchOptions {
    /// Simulated hours.
    pub hours: f64,
    /// Seed of the fleet.
    pub seed: u64,
    /// Quality floor of each route as a share of its most capable model's quality.
    pub share_of_best: f64,
    /// Multiplies every route's call rate (fewer calls: a shorter run, less evidence).
    pub rate_scale: f64,
    /// Also tune each route's `max_tokens` (its value and three quarters of it).
    pub tune: bool,
    /// `app/route` whose decisions and per-minute quality are printed.
    pub trace: Option<String>,
    /// Incidents played on top of the quiet fleet (none: what routing alone saves).
    pub incidents: Vec<Incident>,
}

/// One route's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RouteFigures {
    /// `app/route`.
    pub route: String,
    /// Successful calls.
    pub calls: u64,
    /// The route's quality floor.
    pub quality_floor: Option<f64>,
    /// Cost per call as served (USD).
    pub cost_per_call: f64,
    /// Mean expected quality as served.
    pub quality: f64,
    /// The most capable model.
    pub capable: String,
    /// Cost per call always on the most capable model.
    pub capable_cost_per_call: f64,
    /// Its mean quality.
    pub capable_quality: f64,
    /// Cost per call under the initial routing.
    pub initial_cost_per_call: f64,
    /// Its mean quality.
    pub initial_quality: f64,
    /// 1 − cost / most capable's cost.
    pub cost_reduction_vs_capable: f64,
    /// quality / most capable's quality.
    pub quality_vs_capable: f64,
    /// 1 − cost / initial routing's cost.
    pub cost_reduction_vs_initial: f64,
    /// Longest run of consecutive one-minute windows whose mean expected quality was below the
    /// floor.
    pub longest_below_floor_windows: usize,
    /// The same, counted only after the route first met its floor (a route whose initial
    /// routing misses the floor starts below it until the router has moved it).
    pub longest_below_floor_after_met: usize,
    /// Minutes until the route first met its floor (0 when its initial routing did).
    pub minutes_to_floor: Option<usize>,
    /// Minute (since the start) the longest run under the floor after that began.
    pub longest_below_floor_at_minute: Option<i64>,
    /// Routing at the end: `provider/model` → share.
    pub final_routing: BTreeMap<String, f64>,
    /// Route params at the end.
    pub final_params: BTreeMap<String, String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RouteBenchReport {
    /// Simulated hours.
    pub hours: f64,
    /// Fleet seed.
    pub seed: u64,
    /// Telemetry events produced.
    pub events: u64,
    /// Incidents played.
    pub incidents: usize,
    /// Per route.
    pub routes: Vec<RouteFigures>,
    /// Fleet cost per call as served.
    pub cost_per_call: f64,
    /// Fleet cost per call always on the most capable models.
    pub capable_cost_per_call: f64,
    /// Fleet cost per call under the initial routing.
    pub initial_cost_per_call: f64,
    /// Fleet mean quality as served.
    pub quality: f64,
    /// Fleet mean quality always on the most capable models.
    pub capable_quality: f64,
    /// Router decisions by phase (explore, exploit, quality_guard).
    pub router_steps: BTreeMap<String, usize>,
    /// Router decisions rolled back by their verification.
    pub router_rollbacks: usize,
    /// Tuner decisions by phase (trial, switch).
    pub tuning_steps: BTreeMap<String, usize>,
    /// Tuner trials rolled back (an arm under the floor).
    pub tuning_rollbacks: usize,
    /// Any decisions rolled back.
    pub rollbacks: usize,
    /// Alerts fired.
    pub alerts: usize,
    /// Wall seconds.
    pub elapsed_s: f64,
}

fn per_call(x: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x / n as f64
    }
}

/// Longest run of one-minute windows below `floor`: over the whole run, and after the route
/// first met it; and the minutes until it first did.
fn below_floor(
    ledger: &RouteLedger,
    floor: Option<f64>,
) -> (usize, usize, Option<usize>, Option<i64>) {
    let Some(floor) = floor else {
        return (0, 0, Some(0), None);
    };
    let (mut run, mut longest, mut after_met) = (0, 0, 0);
    let mut met_at = None;
    let mut worst_at = None;
    for (i, (minute, (calls, q))) in ledger.minutes.iter().enumerate() {
        let below = *calls > 0 && q / (*calls as f64) < floor;
        if below {
            run += 1;
            longest = longest.max(run);
            if met_at.is_some() && run > after_met {
                after_met = run;
                worst_at = Some(minute + 1 - run as i64);
            }
        } else {
            run = 0;
            met_at.get_or_insert(i);
        }
    }
    (longest, after_met, met_at, worst_at)
}

/// Prints `route`'s decision transitions and its minutes under the floor, in time order.
fn trace(
    result: &demo::DemoResult,
    floors: &BTreeMap<(String, String), Option<f64>>,
    route: &str,
    print: &mut (dyn FnMut(String) + Send),
) {
    let mut lines: Vec<(i64, String)> = Vec::new();
    for d in &result.record.decisions {
        if format!("{}/{}", d.app, d.route) != route {
            continue;
        }
        let params: Vec<String> = d
            .params
            .iter()
            .filter(|(k, _)| k.as_str() != "targets")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push((
            d.event_time,
            format!(
                "{:?} {:?} [{}] {}",
                d.strategy,
                d.state,
                params.join(" "),
                d.reason
            ),
        ));
    }
    for l in &result.ledgers {
        if format!("{}/{}", l.app, l.route) != route {
            continue;
        }
        let floor = floors
            .get(&(l.app.clone(), l.route.clone()))
            .copied()
            .flatten();
        for (minute, (calls, q)) in &l.minutes {
            let mean = q / (*calls).max(1) as f64;
            if floor.is_some_and(|f| *calls > 0 && mean < f) {
                lines.push((
                    SIM_START_MS + minute * 60_000,
                    format!("under the floor: expected quality {mean:.4} over {calls} calls"),
                ));
            }
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    for (t, line) in lines {
        let m = (t - SIM_START_MS) as f64 / 60_000.0;
        print(format!("trace {route} minute {m:.2}: {line}"));
    }
}

/// Runs the bench. `print` receives progress lines.
pub async fn run(
    base: &AppConfig,
    options: &RouteBenchOptions,
    print: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<RouteBenchReport> {
    Ok(run_with_result(base, options, print).await?.0)
}

/// [`run`], also returning the run itself (decisions, config changes, ledgers) for checks on
/// its timeline.
pub async fn run_with_result(
    base: &AppConfig,
    options: &RouteBenchOptions,
    print: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<(RouteBenchReport, demo::DemoResult)> {
    anyhow::ensure!(
        options.hours.is_finite() && options.hours > 0.0,
        "hours must be a positive number"
    );
    anyhow::ensure!(
        options.rate_scale.is_finite() && options.rate_scale > 0.0,
        "rate scale must be a positive number"
    );
    let mut fleet = FleetSpec::default();
    for app in &mut fleet.apps {
        for route in &mut app.routes {
            route.calls_per_s *= options.rate_scale;
        }
    }
    let duration_s = (options.hours * 3600.0).round() as u64;
    let scenario = Scenario {
        name: if options.incidents.is_empty() {
            "quiet".to_string()
        } else {
            "incidents".to_string()
        },
        description: "the default fleet under the router".to_string(),
        duration_s,
        incidents: options.incidents.clone(),
    };
    let demo_options = DemoOptions {
        seed: options.seed,
        scenario,
        step_s: 60,
        speed: 0.0,
        duration_s: None,
        max_rate: None,
    };
    let mut base = policy::with_router(base.clone(), &fleet, options.share_of_best, options.tune);
    base.decision.mode = llmopt_decision::config::Mode::Auto;
    let (config, sim) = demo::prepare_fleet(base, &demo_options, fleet, SIM_START_MS)?;
    let floors: BTreeMap<(String, String), Option<f64>> = config
        .decision
        .routes
        .iter()
        .map(|p| ((p.app.clone(), p.route.clone()), p.quality_floor))
        .collect();
    let result = demo::run_embedded_prepared(config, sim, &demo_options, &mut |line| {
        if line.contains("progress:") {
            print(line)
        }
    })
    .await?;

    if let Some(route) = &options.trace {
        trace(&result, &floors, route, print);
    }
    let mut routes = Vec::new();
    for l in &result.ledgers {
        let key = (l.app.clone(), l.route.clone());
        let floor = floors.get(&key).copied().flatten();
        let (cost, capable_cost, initial_cost) = (
            per_call(l.cost_usd, l.calls),
            per_call(l.capable_cost_usd, l.calls),
            per_call(l.initial_cost_usd, l.calls),
        );
        let (quality, capable_quality) = (
            per_call(l.quality_sum, l.calls),
            per_call(l.capable_quality_sum, l.calls),
        );
        let below = below_floor(l, floor);
        routes.push(RouteFigures {
            route: format!("{}/{}", l.app, l.route),
            calls: l.calls,
            quality_floor: floor,
            cost_per_call: cost,
            quality,
            capable: l.capable.clone().unwrap_or_default(),
            capable_cost_per_call: capable_cost,
            capable_quality,
            initial_cost_per_call: initial_cost,
            initial_quality: per_call(l.initial_quality_sum, l.calls),
            cost_reduction_vs_capable: 1.0 - cost / capable_cost.max(f64::MIN_POSITIVE),
            quality_vs_capable: quality / capable_quality.max(f64::MIN_POSITIVE),
            cost_reduction_vs_initial: 1.0 - cost / initial_cost.max(f64::MIN_POSITIVE),
            longest_below_floor_windows: below.0,
            longest_below_floor_after_met: below.1,
            minutes_to_floor: below.2,
            longest_below_floor_at_minute: below.3,
            final_routing: result
                .routing
                .get(&key)
                .map(|c| {
                    c.targets
                        .iter()
                        .filter(|t| t.weight > 1e-9)
                        .map(|t| (format!("{}/{}", t.provider, t.model), t.weight))
                        .collect()
                })
                .unwrap_or_default(),
            final_params: result
                .routing
                .get(&key)
                .map(|c| c.params.clone())
                .unwrap_or_default(),
        });
    }
    let total = |f: fn(&RouteLedger) -> f64| result.ledgers.iter().map(f).sum::<f64>();
    let calls: u64 = result.ledgers.iter().map(|l| l.calls).sum();
    let decisions = result.record.latest_decisions();
    let mut router_steps = BTreeMap::new();
    let mut router_rollbacks = 0;
    let mut rollbacks = 0;
    let mut tuning_steps = BTreeMap::new();
    let mut tuning_rollbacks = 0;
    for d in decisions.values() {
        if d.state == DecisionState::RolledBack {
            rollbacks += 1;
        }
        if d.strategy == Strategy::ParameterTuning {
            let phase = d.params.get("phase").cloned().unwrap_or_default();
            *tuning_steps.entry(phase).or_insert(0) += 1;
            if d.state == DecisionState::RolledBack {
                tuning_rollbacks += 1;
            }
        }
        if d.strategy != Strategy::Experiment {
            continue;
        }
        let phase = d.params.get("phase").cloned().unwrap_or_default();
        *router_steps.entry(phase).or_insert(0) += 1;
        if d.state == DecisionState::RolledBack {
            router_rollbacks += 1;
        }
    }
    let report = RouteBenchReport {
        hours: options.hours,
        seed: options.seed,
        events: result.calls,
        incidents: options.incidents.len(),
        routes,
        cost_per_call: per_call(total(|l| l.cost_usd), calls),
        capable_cost_per_call: per_call(total(|l| l.capable_cost_usd), calls),
        initial_cost_per_call: per_call(total(|l| l.initial_cost_usd), calls),
        quality: per_call(total(|l| l.quality_sum), calls),
        capable_quality: per_call(total(|l| l.capable_quality_sum), calls),
        router_steps,
        router_rollbacks,
        tuning_steps,
        tuning_rollbacks,
        rollbacks,
        alerts: result.record.firing().count(),
        elapsed_s: result.elapsed.as_secs_f64(),
    };
    Ok((report, result))
}

/// The report as a table.
pub fn render(r: &RouteBenchReport) -> String {
    let mut out = format!(
        "ROUTER vs BASELINES: {} simulated hours of the default fleet, {}, seed {} ({} events, \
         {:.0} s)\n\n",
        r.hours,
        if r.incidents == 0 {
            "no incidents".to_string()
        } else {
            format!("{} incidents", r.incidents)
        },
        r.seed,
        r.events,
        r.elapsed_s
    );
    out.push_str(&format!(
        "{:<30} {:>6} {:>11} {:>11} {:>8} {:>8} {:>7} {:>9} {:>6} {:>6}  {}\n",
        "route",
        "floor",
        "$/call",
        "capable $",
        "saved",
        "quality",
        "q/best",
        "vs initial",
        "met",
        "below",
        "final routing"
    ));
    for f in &r.routes {
        let mut routing: Vec<String> = f
            .final_routing
            .iter()
            .map(|(m, w)| format!("{m} {w:.2}"))
            .collect();
        if let Some(mt) = f.final_params.get("max_tokens") {
            routing.push(format!("max_tokens {mt}"));
        }
        out.push_str(&format!(
            "{:<30} {:>6} {:>11.6} {:>11.6} {:>7.1}% {:>8.3} {:>6.1}% {:>8.1}% {:>6} {:>6}  {}\n",
            f.route,
            f.quality_floor
                .map_or("-".to_string(), |q| format!("{q:.3}")),
            f.cost_per_call,
            f.capable_cost_per_call,
            f.cost_reduction_vs_capable * 100.0,
            f.quality,
            f.quality_vs_capable * 100.0,
            f.cost_reduction_vs_initial * 100.0,
            f.minutes_to_floor
                .map_or("never".to_string(), |m| format!("{m}m")),
            f.longest_below_floor_after_met,
            routing.join(", ")
        ));
    }
    out.push_str(&format!(
        "\nfleet: ${:.6}/call vs ${:.6} always most capable ({:.1}% less) and ${:.6} static \
         initial routing ({:.1}% less); quality {:.3} = {:.1}% of the most capable's {:.3}\n",
        r.cost_per_call,
        r.capable_cost_per_call,
        (1.0 - r.cost_per_call / r.capable_cost_per_call.max(f64::MIN_POSITIVE)) * 100.0,
        r.initial_cost_per_call,
        (1.0 - r.cost_per_call / r.initial_cost_per_call.max(f64::MIN_POSITIVE)) * 100.0,
        r.quality,
        r.quality / r.capable_quality.max(f64::MIN_POSITIVE) * 100.0,
        r.capable_quality
    ));
    out.push_str(&format!(
        "router steps: {:?}; router steps rolled back: {}; tuner steps: {:?}; tuner trials \
         rolled back: {}; all rollbacks: {}; alerts fired: {}\n\
         (met: minutes until the route's expected quality first met its floor; below: longest run\n\
         of one-minute windows under the floor after that)\n",
        r.router_steps,
        r.router_rollbacks,
        r.tuning_steps,
        r.tuning_rollbacks,
        r.rollbacks,
        r.alerts
    ));
    out
}
