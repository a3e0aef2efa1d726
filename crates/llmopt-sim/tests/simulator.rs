//! Behaviour of the simulator: determinism, the routing loop, and what each incident does.

use std::collections::BTreeMap;

use llmopt_events::{CallStatus, ChangeKind, ConfigChange, LlmCall, RouteTarget, Strategy};
use llmopt_sim::{
    FleetSpec, GroundTruthKind, Incident, IncidentKind, PriceTable, RouteSnapshot, Scenario,
    SimError, SimEvent, Simulator,
};

const START: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 10_000;

fn at(s: i64) -> i64 {
    START + s * 1000
}

fn new_sim(seed: u64, scenario: Scenario) -> Result<Simulator, SimError> {
    Simulator::new(FleetSpec::default(), scenario, seed, START)
}

/// Runs to `until_s` in 10 s steps with no live config (initial routing).
fn run(sim: &mut Simulator, until_s: i64) -> Vec<SimEvent> {
    run_routed(sim, until_s, &mut |_, _| None)
}

/// Runs to `until_s` in 10 s steps with `routing` as the live config.
fn run_routed(
    sim: &mut Simulator,
    until_s: i64,
    routing: &mut dyn FnMut(&str, &str) -> Option<RouteSnapshot>,
) -> Vec<SimEvent> {
    let mut out = Vec::new();
    let mut t = sim.now_ms();
    while t < at(until_s) {
        t = (t + STEP_MS).min(at(until_s));
        out.extend(sim.advance(t, routing));
    }
    out
}

fn calls(events: &[SimEvent]) -> Vec<&LlmCall> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Call { call, .. } => Some(call),
            SimEvent::ConfigChange(_) => None,
        })
        .collect()
}

fn changes(events: &[SimEvent]) -> Vec<&ConfigChange> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::ConfigChange(c) => Some(c),
            SimEvent::Call { .. } => None,
        })
        .collect()
}

fn on_route<'a>(calls: &[&'a LlmCall], app: &str, route: &str) -> Vec<&'a LlmCall> {
    calls
        .iter()
        .filter(|c| c.app == app && c.route == route)
        .copied()
        .collect()
}

fn between<'a>(calls: &[&'a LlmCall], from_s: i64, to_s: i64) -> Vec<&'a LlmCall> {
    calls
        .iter()
        .filter(|c| c.event_time >= at(from_s) && c.event_time < at(to_s))
        .copied()
        .collect()
}

fn error_rate(calls: &[&LlmCall]) -> f64 {
    let errors = calls
        .iter()
        .filter(|c| c.status == CallStatus::Error)
        .count();
    errors as f64 / calls.len().max(1) as f64
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}

fn mean_ok_latency(calls: &[&LlmCall]) -> f64 {
    mean(
        calls
            .iter()
            .filter(|c| c.status == CallStatus::Ok)
            .map(|c| c.latency_ms),
    )
}

fn mean_quality(calls: &[&LlmCall]) -> f64 {
    mean(calls.iter().filter_map(|c| c.quality_score))
}

fn only_regression(at_s: u64) -> Scenario {
    Scenario {
        name: "regression".to_string(),
        description: String::new(),
        duration_s: 600,
        incidents: vec![Incident {
            name: "slow".to_string(),
            kind: IncidentKind::LatencyRegressionAfterConfigChange {
                app: "support-bot".to_string(),
                route: "answer".to_string(),
                at_s,
                latency_factor: 2.0,
            },
        }],
    }
}

#[test]
fn same_seed_gives_identical_events() -> Result<(), SimError> {
    let mut a = new_sim(7, Scenario::default())?;
    let mut b = new_sim(7, Scenario::default())?;
    let ea = run(&mut a, 3000);
    let eb = run(&mut b, 3000);
    assert!(ea.len() > 30_000, "{} events", ea.len());
    assert_eq!(ea, eb);
    Ok(())
}

#[test]
fn different_seeds_give_different_events() -> Result<(), SimError> {
    let mut a = new_sim(7, Scenario::default())?;
    let mut b = new_sim(8, Scenario::default())?;
    assert_ne!(run(&mut a, 300), run(&mut b, 300));
    Ok(())
}

#[test]
fn advance_boundaries_do_not_change_events_under_fixed_routing() -> Result<(), SimError> {
    let mut a = new_sim(3, only_regression(100))?;
    let mut b = new_sim(3, only_regression(100))?;
    let whole = a.advance(at(400), &mut |_, _| None);
    let mut stepped = Vec::new();
    let mut t = START;
    while t < at(400) {
        t = (t + 7_000).min(at(400));
        stepped.extend(b.advance(t, &mut |_, _| None));
    }
    assert_eq!(whole, stepped);
    assert_eq!(changes(&whole).len(), 1);
    Ok(())
}

#[test]
fn events_are_sorted_within_each_step_and_ids_are_per_app() -> Result<(), SimError> {
    let mut sim = new_sim(1, Scenario::default())?;
    let mut last_per_route: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_app: BTreeMap<String, u64> = BTreeMap::new();
    let mut t = START;
    while t < at(600) {
        let until = t + STEP_MS;
        let events = sim.advance(until, &mut |_, _| None);
        assert!(events
            .windows(2)
            .all(|w| w[0].event_time() <= w[1].event_time()));
        for e in &events {
            assert!(e.event_time() >= t && e.event_time() < until);
            let last = last_per_route.entry(e.key()).or_insert(i64::MIN);
            assert!(e.event_time() >= *last, "time went back on {}", e.key());
            *last = e.event_time();
            if let SimEvent::Call { call, id, source } = e {
                let n = per_app.entry(call.app.clone()).or_insert(0);
                *n += 1;
                assert_eq!(id, &format!("{}-{}", call.app, n));
                assert_eq!(source, &format!("/apps/{}", call.app));
                assert!(call
                    .request_id
                    .starts_with(&format!("{}-{}-", call.app, call.route)));
            }
        }
        t = until;
    }
    // 11.5 calls/s for 600 s.
    let total: u64 = per_app.values().sum();
    assert!((6_200..=7_600).contains(&total), "{total} calls");
    assert_eq!(sim.now_ms(), at(600));
    Ok(())
}

#[test]
fn going_backwards_produces_nothing() -> Result<(), SimError> {
    let mut sim = new_sim(1, Scenario::default())?;
    assert!(!sim.advance(at(60), &mut |_, _| None).is_empty());
    assert!(sim.advance(at(60), &mut |_, _| None).is_empty());
    assert!(sim.advance(at(30), &mut |_, _| None).is_empty());
    assert_eq!(sim.now_ms(), at(60));
    Ok(())
}

#[test]
fn no_live_config_serves_initial_targets_at_version_1() -> Result<(), SimError> {
    let mut sim = new_sim(11, Scenario::default())?;
    let events = run(&mut sim, 1800);
    let all = calls(&events);
    assert!(all.iter().all(|c| c.config_version == Some(1)));
    let summary = on_route(&all, "checkout", "order-summary");
    let mini = summary
        .iter()
        .filter(|c| c.gen_ai_request_model == "gpt-4o-mini")
        .count() as f64
        / summary.len() as f64;
    assert!((0.06..0.10).contains(&mini), "candidate share {mini}");
    assert!(summary
        .iter()
        .all(|c| c.gen_ai_request_model == "gpt-4o" || c.gen_ai_request_model == "gpt-4o-mini"));
    Ok(())
}

#[test]
fn routing_snapshot_moves_all_traffic() -> Result<(), SimError> {
    let mut sim = new_sim(5, Scenario::default())?;
    let mut routing = |app: &str, route: &str| {
        (app == "checkout" && route == "order-summary").then(|| RouteSnapshot {
            params: BTreeMap::new(),
            version: 5,
            targets: vec![RouteTarget {
                provider: "openai".to_string(),
                model: "gpt-4o-mini".to_string(),
                weight: 1.0,
            }],
        })
    };
    let events = sim.advance(at(600), &mut routing);
    let all = calls(&events);
    let summary = on_route(&all, "checkout", "order-summary");
    assert!(summary.len() > 1000);
    assert!(summary
        .iter()
        .all(|c| c.gen_ai_request_model == "gpt-4o-mini" && c.config_version == Some(5)));
    let others: Vec<_> = all.iter().filter(|c| c.route != "order-summary").collect();
    assert!(others.iter().all(|c| c.config_version == Some(1)));
    Ok(())
}

#[test]
fn unknown_model_in_live_config_fails_calls_instead_of_panicking() -> Result<(), SimError> {
    let mut sim = new_sim(5, Scenario::default())?;
    let mut routing = |_: &str, route: &str| {
        (route == "triage").then(|| RouteSnapshot {
            params: BTreeMap::new(),
            version: 2,
            targets: vec![RouteTarget {
                provider: "nobody".to_string(),
                model: "gpt-9".to_string(),
                weight: 1.0,
            }],
        })
    };
    let events = sim.advance(at(300), &mut routing);
    let all = calls(&events);
    let triage = on_route(&all, "support-bot", "triage");
    assert!(!triage.is_empty());
    assert!(triage.iter().all(|c| c.status == CallStatus::Error
        && c.error_type.as_deref() == Some("model_not_found")
        && c.cost_usd.is_none()));
    Ok(())
}

#[test]
fn unusable_weights_fall_back_to_initial_targets() -> Result<(), SimError> {
    let mut sim = new_sim(5, Scenario::default())?;
    let mut routing = |_: &str, route: &str| {
        (route == "triage").then(|| RouteSnapshot {
            params: BTreeMap::new(),
            version: 4,
            targets: vec![RouteTarget {
                provider: "openai".to_string(),
                model: "gpt-4o".to_string(),
                weight: f64::NAN,
            }],
        })
    };
    let events = sim.advance(at(300), &mut routing);
    let all = calls(&events);
    let triage = on_route(&all, "support-bot", "triage");
    assert!(triage
        .iter()
        .all(|c| c.gen_ai_request_model == "claude-3-5-haiku" && c.config_version == Some(4)));
    Ok(())
}

#[test]
fn baseline_telemetry_looks_like_production() -> Result<(), SimError> {
    let mut sim = new_sim(21, Scenario::default())?;
    let events = run(&mut sim, 1200);
    let all = calls(&events);
    let prices = PriceTable::default();

    let rate = error_rate(&all);
    assert!((0.003..0.012).contains(&rate), "base error rate {rate}");
    let unpriced = all.iter().filter(|c| c.cost_usd.is_none()).count() as f64 / all.len() as f64;
    assert!(
        (0.27..0.33).contains(&unpriced),
        "unpriced share {unpriced}"
    );
    let ok: Vec<_> = all.iter().filter(|c| c.status == CallStatus::Ok).collect();
    let scored = ok.iter().filter(|c| c.quality_score.is_some()).count() as f64 / ok.len() as f64;
    assert!((0.37..0.43).contains(&scored), "scored share {scored}");

    for c in &all {
        match c.status {
            CallStatus::Ok => {
                assert!(c.error_type.is_none());
                assert!(c.gen_ai_usage_output_tokens >= 1 && c.gen_ai_usage_input_tokens >= 1);
                assert!(c.time_to_first_token_ms.is_some_and(|t| t <= c.latency_ms));
                assert!(c.quality_score.is_none_or(|q| (0.0..=1.0).contains(&q)));
            }
            CallStatus::Error => {
                assert!(matches!(
                    c.error_type.as_deref(),
                    Some("timeout" | "rate_limited" | "server_error")
                ));
                assert!(c.quality_score.is_none());
            }
        }
        if let Some(cost) = c.cost_usd {
            let list = prices.price(
                &c.gen_ai_provider_name,
                &c.gen_ai_request_model,
                c.gen_ai_usage_input_tokens,
                c.gen_ai_usage_output_tokens,
            );
            assert!(
                list.is_some_and(|l| (l - cost).abs() < 1e-12),
                "{cost} vs {list:?}"
            );
        }
    }
    // Long tail: p99 well above the median on a single route.
    let mut lat: Vec<f64> = on_route(
        &ok.iter().map(|c| **c).collect::<Vec<_>>(),
        "support-bot",
        "answer",
    )
    .iter()
    .map(|c| c.latency_ms)
    .collect();
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    assert!(p99 > 2.0 * p50, "p50 {p50} p99 {p99}");
    Ok(())
}

#[test]
fn cheaper_candidate_quality_is_within_a_few_points() -> Result<(), SimError> {
    // Split order-summary evenly so both models get thousands of scores.
    let mut sim = new_sim(12, Scenario::default())?;
    let half = |model: &str| RouteTarget {
        provider: "openai".to_string(),
        model: model.to_string(),
        weight: 0.5,
    };
    let mut routing = |_: &str, route: &str| {
        (route == "order-summary").then(|| RouteSnapshot {
            params: BTreeMap::new(),
            version: 2,
            targets: vec![half("gpt-4o"), half("gpt-4o-mini")],
        })
    };
    let events = sim.advance(at(3600), &mut routing);
    let all = calls(&events);
    let summary = on_route(&all, "checkout", "order-summary");
    let q = |m: &str| {
        let on_model: Vec<&LlmCall> = summary
            .iter()
            .filter(|c| c.gen_ai_request_model == m)
            .copied()
            .collect();
        mean_quality(&on_model)
    };
    let (big, mini) = (q("gpt-4o"), q("gpt-4o-mini"));
    assert!(
        big > mini && big - mini < 0.04,
        "gpt-4o {big} vs mini {mini}"
    );
    Ok(())
}

#[test]
fn provider_error_burst_raises_error_rate_only_while_it_lasts() -> Result<(), SimError> {
    let mut sim = new_sim(2, Scenario::default())?;
    let events = run(&mut sim, 2400);
    let all = calls(&events);
    let search = on_route(&all, "search", "query-rewrite");
    let before = error_rate(&between(&search, 600, 1200));
    let during = error_rate(&between(&search, 1200, 1800));
    let after = error_rate(&between(&search, 1800, 2400));
    assert!(
        before < 0.02 && after < 0.02,
        "before {before} after {after}"
    );
    assert!((0.25..0.35).contains(&during), "during {during}");
    // Other models are untouched.
    let others: Vec<_> = between(&all, 1200, 1800)
        .into_iter()
        .filter(|c| c.route != "query-rewrite")
        .collect();
    assert!(error_rate(&others) < 0.02);
    Ok(())
}

/// A stand-in for the actuator's projection of `config.changes` into the state store.
#[derive(Default)]
struct Store(BTreeMap<(String, String), RouteSnapshot>);

impl Store {
    fn apply(&mut self, c: &ConfigChange) {
        self.0.insert(
            (c.app.clone(), c.route.clone()),
            RouteSnapshot {
                params: BTreeMap::new(),
                version: c.version,
                targets: c.targets.clone(),
            },
        );
    }

    fn get(&self, app: &str, route: &str) -> Option<RouteSnapshot> {
        self.0.get(&(app.to_string(), route.to_string())).cloned()
    }
}

#[test]
fn latency_regression_comes_with_a_manual_change_and_heals_on_rollback() -> Result<(), SimError> {
    let mut sim = new_sim(4, Scenario::default())?;
    let mut store = Store::default();
    for c in sim.initial_config_changes(START) {
        store.apply(&c);
    }
    let mut events = Vec::new();
    let mut t = START;
    while t < at(3900) {
        if t == at(3300) {
            // The closed loop rolls back: previous targets, a new version.
            let current = store.get("support-bot", "answer");
            let Some(current) = current else {
                panic!("route missing from the store");
            };
            store.apply(&ConfigChange {
                id: "support-bot/answer/v3".to_string(),
                event_time: t,
                app: "support-bot".to_string(),
                route: "answer".to_string(),
                version: current.version + 1,
                previous_version: Some(current.version),
                kind: ChangeKind::Rollback,
                decision_id: Some("d-1".to_string()),
                targets: current.targets.clone(),
                params: BTreeMap::new(),
            });
        }
        t += STEP_MS;
        let step = sim.advance(t, &mut |app, route| store.get(app, route));
        for c in changes(&step) {
            store.apply(c);
        }
        events.extend(step);
    }

    let manual = changes(&events);
    assert_eq!(manual.len(), 1);
    let m = manual[0];
    assert_eq!(m.kind, ChangeKind::Manual);
    assert_eq!(m.event_time, at(2700));
    assert_eq!(
        (m.app.as_str(), m.route.as_str()),
        ("support-bot", "answer")
    );
    assert_eq!((m.version, m.previous_version), (2, Some(1)));
    assert_eq!(m.id, "support-bot/answer/v2");
    assert_eq!(m.decision_id, None);
    let fleet = FleetSpec::default();
    let initial = fleet
        .route("support-bot", "answer")
        .map(|r| r.targets.clone());
    assert_eq!(Some(m.targets.clone()), initial);
    assert_eq!(
        m.params.get("prompt_version").map(String::as_str),
        Some("8")
    );

    let all = calls(&events);
    let answer = on_route(&all, "support-bot", "answer");
    let v1 = between(&answer, 2100, 2700);
    let v2 = between(&answer, 2700, 3300);
    let v3 = between(&answer, 3300, 3900);
    assert!(v1.iter().all(|c| c.config_version == Some(1)));
    assert!(v2.iter().all(|c| c.config_version == Some(2)));
    assert!(v3.iter().all(|c| c.config_version == Some(3)));
    let (l1, l2, l3) = (
        mean_ok_latency(&v1),
        mean_ok_latency(&v2),
        mean_ok_latency(&v3),
    );
    assert!((1.7..2.3).contains(&(l2 / l1)), "v1 {l1} v2 {l2}");
    assert!((0.8..1.25).contains(&(l3 / l1)), "v1 {l1} v3 {l3}");
    // Other routes keep their speed.
    let triage = on_route(&all, "support-bot", "triage");
    let ratio = mean_ok_latency(&between(&triage, 2700, 3300))
        / mean_ok_latency(&between(&triage, 2100, 2700));
    assert!((0.85..1.15).contains(&ratio), "triage ratio {ratio}");
    Ok(())
}

#[test]
fn manual_change_takes_effect_even_if_the_live_config_lags() -> Result<(), SimError> {
    let mut sim = new_sim(4, only_regression(120))?;
    let events = run(&mut sim, 480);
    let all = calls(&events);
    let answer = on_route(&all, "support-bot", "answer");
    let after = between(&answer, 120, 480);
    assert!(after.iter().all(|c| c.config_version == Some(2)));
    let ratio = mean_ok_latency(&after) / mean_ok_latency(&between(&answer, 0, 120));
    assert!(ratio > 1.6, "ratio {ratio}");
    Ok(())
}

#[test]
fn quality_drift_lowers_quality_over_time() -> Result<(), SimError> {
    let mut sim = new_sim(6, Scenario::default())?;
    let events = run(&mut sim, 7200);
    let all = calls(&events);
    let triage = on_route(&all, "support-bot", "triage");
    let before = mean_quality(&between(&triage, 3000, 5700));
    let early = mean_quality(&between(&triage, 5700, 6300));
    let late = mean_quality(&between(&triage, 6600, 7200));
    // 0.2 per hour: about 0.017 in the first window, 0.067 in the last.
    assert!(before - late > 0.045, "before {before} late {late}");
    assert!(early > late, "early {early} late {late}");
    let summary = on_route(&all, "checkout", "order-summary");
    let drift_free =
        mean_quality(&between(&summary, 3000, 5700)) - mean_quality(&between(&summary, 6600, 7200));
    assert!(
        drift_free.abs() < 0.02,
        "unaffected route moved {drift_free}"
    );
    Ok(())
}

#[test]
fn cost_spike_bills_more_and_always_reports_cost() -> Result<(), SimError> {
    let mut sim = new_sim(8, Scenario::default())?;
    let prices = sim.price_table();
    let events = run(&mut sim, 5100);
    let all = calls(&events);
    let answer = on_route(&all, "support-bot", "answer");
    let ratio = |c: &LlmCall| {
        let list = prices.price(
            &c.gen_ai_provider_name,
            &c.gen_ai_request_model,
            c.gen_ai_usage_input_tokens,
            c.gen_ai_usage_output_tokens,
        );
        c.cost_usd.zip(list).map(|(cost, list)| cost / list)
    };
    let ok: Vec<&LlmCall> = answer
        .iter()
        .filter(|c| c.status == CallStatus::Ok)
        .copied()
        .collect();
    let answer = ok;
    let during = between(&answer, 4200, 4800);
    assert!(during.len() > 500);
    assert!(during
        .iter()
        .all(|c| ratio(c).is_some_and(|r| (r - 3.0).abs() < 1e-9)));
    for window in [between(&answer, 3600, 4200), between(&answer, 4800, 5100)] {
        assert!(window
            .iter()
            .all(|c| ratio(c).is_none_or(|r| (r - 1.0).abs() < 1e-9)));
        assert!(window.iter().any(|c| c.cost_usd.is_none()));
    }
    Ok(())
}

#[test]
fn self_hosted_too_expensive_raises_cost_for_good() -> Result<(), SimError> {
    let mut sim = new_sim(9, Scenario::default())?;
    let prices = sim.price_table();
    let events = run(&mut sim, 6000);
    let all = calls(&events);
    let llama = on_route(&all, "checkout", "address-normalize");
    let mean_cost = |cs: &[&LlmCall]| mean(cs.iter().filter_map(|c| c.cost_usd));
    let llama: Vec<&LlmCall> = llama
        .iter()
        .filter(|c| c.status == CallStatus::Ok)
        .copied()
        .collect();
    let before = between(&llama, 4500, 5100);
    let after = between(&llama, 5100, 6000);
    assert!(after.iter().all(|c| {
        let list = prices.price(
            &c.gen_ai_provider_name,
            &c.gen_ai_request_model,
            c.gen_ai_usage_input_tokens,
            c.gen_ai_usage_output_tokens,
        );
        c.cost_usd
            .zip(list)
            .is_some_and(|(cost, list)| (cost / list - 2.5).abs() < 1e-9)
    }));
    let ratio = mean_cost(&after) / mean_cost(&before);
    assert!((2.2..2.8).contains(&ratio), "ratio {ratio}");
    Ok(())
}

#[test]
fn initial_config_changes_seed_every_route() -> Result<(), SimError> {
    let sim = new_sim(1, Scenario::default())?;
    let seeded = sim.initial_config_changes(START - 1);
    let fleet = FleetSpec::default();
    assert_eq!(seeded.len(), fleet.routes().count());
    for ((app, route), c) in fleet.routes().zip(&seeded) {
        assert_eq!(c.id, format!("{}/{}/v1", app.name, route.name));
        assert_eq!(
            (c.version, c.previous_version, c.kind),
            (1, None, ChangeKind::Initial)
        );
        assert_eq!(c.event_time, START - 1);
        assert_eq!(c.decision_id, None);
        assert_eq!(c.targets, route.targets);
        assert_eq!(c.params, route.params);
    }
    Ok(())
}

#[test]
fn ground_truth_of_the_default_run() -> Result<(), SimError> {
    let sim = new_sim(1, Scenario::default())?;
    assert_eq!(sim.end_ms(), at(7200));
    let truth = sim.ground_truth();
    let find = |kind: GroundTruthKind| truth.iter().find(|g| g.kind == kind);
    let canary = find(GroundTruthKind::CheaperCandidate);
    assert!(canary.is_some_and(
        |g| g.expected_strategy == Some(Strategy::CheaperModelCanary)
            && g.route.as_deref() == Some("order-summary")
            && g.start_ms == START
    ));
    let burst = find(GroundTruthKind::ProviderErrorBurst);
    assert!(
        burst.is_some_and(|g| g.expected_strategy == Some(Strategy::Failover)
            && g.app.as_deref() == Some("search")
            && g.route.as_deref() == Some("query-rewrite")
            && g.start_ms == at(1200)
            && g.end_ms == Some(at(1800)))
    );
    let regression = find(GroundTruthKind::LatencyRegressionAfterConfigChange);
    assert!(regression.is_some_and(
        |g| g.expected_strategy == Some(Strategy::RegressionRollback)
            && g.route.as_deref() == Some("answer")
            && g.end_ms.is_none()
    ));
    let quant = find(GroundTruthKind::SelfHostedTooExpensive);
    assert!(quant.is_some_and(
        |g| g.expected_strategy == Some(Strategy::QuantizationRequest)
            && g.provider.as_deref() == Some("self-hosted")
            && g.route.as_deref() == Some("address-normalize")
    ));
    for kind in [GroundTruthKind::CostSpike, GroundTruthKind::QualityDrift] {
        assert!(find(kind).is_some_and(|g| g.expected_strategy.is_none()));
    }
    assert_eq!(truth.len(), 6);
    assert!(truth.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
    Ok(())
}

#[test]
fn invalid_inputs_are_rejected() {
    let bad_route = Scenario {
        incidents: vec![Incident {
            name: "x".to_string(),
            kind: IncidentKind::LatencyRegressionAfterConfigChange {
                app: "support-bot".to_string(),
                route: "nope".to_string(),
                at_s: 1,
                latency_factor: 2.0,
            },
        }],
        ..Scenario::default()
    };
    assert!(matches!(
        new_sim(1, bad_route),
        Err(SimError::UnknownRoute { .. })
    ));
    let fleet = FleetSpec {
        quality_share: 1.5,
        ..FleetSpec::default()
    };
    assert!(matches!(
        Simulator::new(fleet, Scenario::default(), 1, START),
        Err(SimError::InvalidValue { .. })
    ));
}

#[test]
fn office_hours_traffic_is_busy_in_the_afternoon_quiet_at_night_and_slower_under_load(
) -> Result<(), SimError> {
    // 2026-01-05T00:00:00Z, a Monday; the realistic shape peaks at 14:00 UTC.
    let monday = 1_767_571_200_000;
    let fleet = FleetSpec {
        traffic: llmopt_sim::TrafficShape::realistic(),
        ..FleetSpec::default()
    };
    let scenario = Scenario {
        duration_s: 24 * 3600,
        incidents: Vec::new(),
        ..Scenario::default()
    };
    let mut sim = Simulator::new(fleet, scenario, 3, monday)?;
    let hourly = hourly_calls(&mut sim, monday, 24);
    let (night, afternoon) = (&hourly[2], &hourly[14]);
    let ratio = afternoon.len() as f64 / night.len() as f64;
    // Expected 1.6 / 0.4 = 4 at 02:00-03:00 against 14:00-15:00 (about 0.4 and 1.6 of the mean).
    assert!((3.0..5.0).contains(&ratio), "afternoon/night calls {ratio}");
    let latency = |calls: &[LlmCall]| {
        let refs: Vec<&LlmCall> = calls.iter().collect();
        mean_ok_latency(&refs)
    };
    assert!(
        latency(afternoon) > 1.1 * latency(night),
        "latency does not rise with load"
    );
    Ok(())
}

#[test]
fn a_flat_shape_draws_exactly_the_events_of_a_fleet_without_one() -> Result<(), SimError> {
    let shaped = FleetSpec {
        traffic: llmopt_sim::TrafficShape {
            latency_load_sensitivity: 0.5,
            ..llmopt_sim::TrafficShape::default()
        },
        ..FleetSpec::default()
    };
    let mut a = new_sim(4, Scenario::default())?;
    let mut b = Simulator::new(shaped, Scenario::default(), 4, START)?;
    assert_eq!(run(&mut a, 600), run(&mut b, 600));
    Ok(())
}

#[test]
fn a_noisy_tenants_nightly_job_adds_its_calls_with_long_prompts_at_its_hour() -> Result<(), SimError>
{
    // 2026-01-05T00:00:00Z, a Monday.
    let monday = 1_767_571_200_000;
    let fleet = FleetSpec {
        noisy_tenants: vec![
            llmopt_sim::NoisyTenant::nightly_batch_job("globex"),
            llmopt_sim::NoisyTenant::bursty("umbrella"),
        ],
        ..FleetSpec::default()
    };
    let mut sim = Simulator::new(fleet, quiet(3), 3, monday)?;
    let hourly = hourly_calls(&mut sim, monday, 3);
    let summary = |calls: &[LlmCall]| {
        let on_route: Vec<&LlmCall> = calls
            .iter()
            .filter(|c| c.route == "order-summary" && c.status == CallStatus::Ok)
            .collect();
        let globex = on_route
            .iter()
            .filter(|c| c.tenant.as_deref() == Some("globex"))
            .count();
        let input = on_route
            .iter()
            .map(|c| c.gen_ai_usage_input_tokens as f64)
            .sum::<f64>()
            / on_route.len() as f64;
        (on_route.len() as f64, globex as f64, input)
    };
    let (before, globex_before, input_before) = summary(&hourly[0]);
    let (during, globex_during, input_during) = summary(&hourly[1]);
    let (after, _, _) = summary(&hourly[2]);
    // The job (01:00-02:00) triples the route's calls (extra rate 2), nearly all of the extra
    // from globex, with prompts three times as long: the mean input is about (1 + 2 * 3) / 3.
    assert!(
        (2.5..3.5).contains(&(during / before)),
        "{during} vs {before}"
    );
    assert!(
        (2.5..3.5).contains(&(during / after)),
        "{during} vs {after}"
    );
    assert!(globex_during > 2.0 * before && globex_before < 0.5 * before);
    let ratio = input_during / input_before;
    assert!((2.0..2.7).contains(&ratio), "input tokens x{ratio}");
    // A tenant no app lists is a configuration mistake.
    let typo = FleetSpec {
        noisy_tenants: vec![llmopt_sim::NoisyTenant::nightly_batch_job("globx")],
        ..FleetSpec::default()
    };
    assert!(matches!(
        Simulator::new(typo, quiet(1), 1, monday),
        Err(SimError::InvalidValue { .. })
    ));
    Ok(())
}

/// The calls of each of the `hours` hours from `start_ms`, stepping `sim` an hour at a time
/// under its initial routing.
fn hourly_calls(sim: &mut Simulator, start_ms: i64, hours: i64) -> Vec<Vec<LlmCall>> {
    (1..=hours)
        .map(|hour| {
            let events = sim.advance(start_ms + hour * 3_600_000, &mut |_, _| None);
            calls(&events).into_iter().cloned().collect()
        })
        .collect()
}

/// A quiet scenario of `hours`.
fn quiet(hours: u64) -> Scenario {
    Scenario {
        name: "quiet".into(),
        description: String::new(),
        duration_s: hours * 3600,
        incidents: Vec::new(),
    }
}

#[test]
fn a_route_scores_each_model_with_its_quality_on_the_routes_task() -> Result<(), SimError> {
    let fleet = FleetSpec::default();
    let answer = fleet.route("support-bot", "answer").expect("route");
    let cat = &fleet.catalogue;
    // Listed: the route's own figure; not listed: the catalogue's.
    assert_eq!(answer.quality_of(cat, "openai", "gpt-4o-mini"), Some(0.79));
    assert_eq!(
        answer.quality_of(cat, "anthropic", "claude-3-5-sonnet"),
        cat.get("anthropic", "claude-3-5-sonnet")
            .map(|m| m.quality_mean)
    );
    assert_eq!(
        answer.most_capable(cat),
        Some(("anthropic".into(), "claude-3-5-sonnet".into()))
    );
    assert_eq!(answer.choices()[0].1, "claude-3-5-sonnet");
    // The same model is good at one task and bad at another.
    let summary = fleet.route("checkout", "order-summary").expect("route");
    assert!(summary.quality_of(cat, "google", "gemini-1.5-flash") < Some(0.75));
    // Calls sent to gpt-4o-mini on the answer route draw scores around 0.79.
    let mut sim = new_sim(5, quiet(1))?;
    let events = run_routed(&mut sim, 3600, &mut |_, route| {
        (route == "answer").then(|| RouteSnapshot {
            params: BTreeMap::new(),
            version: 2,
            targets: vec![RouteTarget {
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                weight: 1.0,
            }],
        })
    });
    let calls = calls(&events);
    let q = mean_quality(&on_route(&calls, "support-bot", "answer"));
    assert!((q - 0.79).abs() < 0.02, "{q}");
    // A quality key that is not in the catalogue is rejected.
    let mut bad = FleetSpec::default();
    bad.apps[0].routes[0]
        .quality
        .insert("openai/gpt-9".into(), 0.9);
    assert!(bad.validate().is_err());
    Ok(())
}

#[test]
fn the_ledger_prices_every_call_as_served_and_under_both_baselines() -> Result<(), SimError> {
    let mut sim = new_sim(9, quiet(1))?;
    let events = run(&mut sim, 1800);
    let calls = calls(&events);
    let prices = PriceTable::from_catalogue(&sim.fleet().catalogue);
    for l in sim.ledgers() {
        let served: Vec<&LlmCall> = on_route(&calls, &l.app, &l.route)
            .into_iter()
            .filter(|c| c.status == CallStatus::Ok)
            .collect();
        assert_eq!(l.calls as usize, served.len(), "{}/{}", l.app, l.route);
        let cost: f64 = served
            .iter()
            .map(|c| {
                prices
                    .price(
                        &c.gen_ai_provider_name,
                        &c.gen_ai_request_model,
                        c.gen_ai_usage_input_tokens,
                        c.gen_ai_usage_output_tokens,
                    )
                    .unwrap_or(f64::NAN)
            })
            .sum();
        assert!(
            (l.cost_usd - cost).abs() < 1e-9 * cost.max(1.0),
            "{}: {} vs {cost}",
            l.route,
            l.cost_usd
        );
        // Under the initial routing (no live config) served = static baseline.
        assert!((l.initial_cost_usd - l.cost_usd).abs() < 0.05 * l.cost_usd.max(1e-12) + 1e-12);
        assert!(l.capable_quality_sum >= l.quality_sum - 1e-9);
        assert_eq!(
            l.minutes.values().map(|(n, _)| n).sum::<u64>(),
            l.calls,
            "every call in one minute"
        );
    }
    let summary = sim
        .ledgers()
        .into_iter()
        .find(|l| l.route == "order-summary")
        .expect("ledger");
    assert_eq!(summary.capable.as_deref(), Some("openai/gpt-4o"));
    Ok(())
}

#[test]
fn a_max_tokens_param_below_the_routes_answer_length_cuts_answers_short() -> Result<(), SimError> {
    let run_with = |max_tokens: Option<&str>| -> Result<Vec<LlmCall>, SimError> {
        let mut sim = new_sim(11, quiet(1))?;
        let spec = sim
            .fleet()
            .route("support-bot", "answer")
            .expect("route")
            .clone();
        let mut params = spec.params.clone();
        if let Some(m) = max_tokens {
            params.insert("max_tokens".into(), m.into());
        }
        let events = run_routed(&mut sim, 3600, &mut |_, route| {
            (route == "answer").then(|| RouteSnapshot {
                version: 2,
                targets: spec.targets.clone(),
                params: params.clone(),
            })
        });
        Ok(calls(&events)
            .into_iter()
            .filter(|c| c.route == "answer" && c.status == CallStatus::Ok)
            .cloned()
            .collect())
    };
    let full = run_with(None)?;
    let cut = run_with(Some("256"))?;
    assert!(full
        .iter()
        .all(|c| c.gen_ai_response_finish_reasons.is_empty()));
    assert!(full.iter().any(|c| c.gen_ai_usage_output_tokens > 256));
    let truncated: Vec<&LlmCall> = cut
        .iter()
        .filter(|c| c.gen_ai_response_finish_reasons == ["length"])
        .collect();
    assert!(
        truncated.len() > cut.len() / 4,
        "{} of {}",
        truncated.len(),
        cut.len()
    );
    assert!(cut.iter().all(|c| c.gen_ai_usage_output_tokens <= 256));
    let q = |cs: &[&LlmCall]| mean_quality(cs);
    let full_refs: Vec<&LlmCall> = full.iter().collect();
    let cut_refs: Vec<&LlmCall> = cut.iter().collect();
    assert!(
        q(&cut_refs) < q(&full_refs) - 0.05,
        "{} vs {}",
        q(&cut_refs),
        q(&full_refs)
    );
    // A value at or above the route's natural cap changes nothing; garbage is ignored.
    assert_eq!(run_with(Some("1024"))?, full);
    assert_eq!(run_with(Some("lots"))?, full);
    Ok(())
}
