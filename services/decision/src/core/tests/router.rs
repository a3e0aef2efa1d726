//! The constrained Thompson sampling router, closed loop with the actuator core: one route,
//! an expensive good model, a cheap good one and a cheaper one that is bad at this route.

use super::*;
use crate::config::AllowedModel;
use crate::strategies::router::{PARAM_PHASE, PHASE_EXPLORE, PHASE_GUARD};
use llmopt_routing::{PARAM_FROM_MODEL, PARAM_MODEL, PARAM_SHIFT};

const FLOOR: f64 = 0.84;

fn allowed(model: &str) -> AllowedModel {
    AllowedModel {
        provider: "openai".into(),
        model: model.into(),
        max_share: 1.0,
    }
}

fn router_config(mode: Mode) -> DecisionConfig {
    let mut c = base(mode);
    c.routes[0].models = vec![allowed("gpt"), allowed("mini"), allowed("flash")];
    c.routes[0].quality_floor = Some(FLOOR);
    c
}

/// gpt: good and expensive; mini: nearly as good, 16x cheaper; flash: cheapest, bad here.
/// From `regress_at` on, mini's quality falls to 0.6.
fn fleet(regress_at: i64) -> impl Fn(&str, &str, i64) -> Behaviour {
    move |_, model, minute| match model {
        "gpt" => Behaviour {
            quality: Some(0.88),
            cost_per_call: 0.01,
            scored: 0.4,
            ..HEALTHY
        },
        "mini" => Behaviour {
            quality: Some(if minute >= regress_at { 0.6 } else { 0.86 }),
            cost_per_call: 0.0006,
            p95: 400.0,
            scored: 0.4,
            ..HEALTHY
        },
        _ => Behaviour {
            quality: Some(0.70),
            cost_per_call: 0.0003,
            p95: 300.0,
            scored: 0.4,
            ..HEALTHY
        },
    }
}

fn quality_of(model: &str) -> f64 {
    match model {
        "gpt" => 0.88,
        "mini" => 0.86,
        _ => 0.70,
    }
}

fn router_decisions(sim: &Sim) -> Vec<DecisionEvent> {
    sim.of_strategy(Strategy::Experiment)
        .into_iter()
        .map(|(_, d)| d.clone())
        .collect()
}

/// Expected quality of the route's traffic under its live routing.
fn route_quality(sim: &Sim) -> f64 {
    ["gpt", "mini", "flash"]
        .iter()
        .map(|m| sim.weight("chat", "openai", m) * quality_of(m))
        .sum()
}

fn start(mode: Mode) -> Sim {
    let mut sim = Sim::new(router_config(mode));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    sim
}

#[test]
fn the_router_moves_a_route_to_the_cheapest_model_that_meets_its_floor() {
    let mut sim = start(Mode::Auto);
    let b = fleet(i64::MAX);
    let mut below = 0;
    let mut max_flash: f64 = 0.0;
    for _ in 0..120 {
        sim.tick(&["chat"], &b);
        max_flash = max_flash.max(sim.weight("chat", "openai", "flash"));
        below = if route_quality(&sim) < FLOOR {
            below + 1
        } else {
            0
        };
        assert!(below <= 3, "below the floor for {below} windows");
    }
    let mini = sim.weight("chat", "openai", "mini");
    assert!(mini > 0.95, "mini serves {mini}");
    assert!(
        sim.weight("chat", "openai", "flash") < 1e-9,
        "flash, bad at this route, was dropped"
    );
    assert!(
        max_flash <= 0.05 + 1e-9,
        "flash was only explored: {max_flash}"
    );
    let decisions = router_decisions(&sim);
    assert!(decisions
        .iter()
        .any(|d| d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_EXPLORE)));
    for d in &decisions {
        let shift: f64 = d.params[PARAM_SHIFT].parse().unwrap();
        assert!(shift <= 0.5 + 1e-9, "{}: shift {shift}", d.id);
        assert_ne!(d.state, DecisionState::RolledBack, "{}", d.id);
        if d.state == DecisionState::Approved {
            let guard = d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_GUARD);
            let test = if guard {
                "z_quality_floor"
            } else {
                "thompson_sampling"
            };
            assert_eq!(d.evidence.test, test, "{}", d.id);
            assert!(d.evidence.metrics.contains_key("p_best:openai/mini"));
        }
        llmopt_routing::parse_action(d).expect("routing contract");
    }
    // Cooldown: no two router changes on the route less than the cooldown apart.
    let changes: Vec<i64> = sim
        .changes()
        .iter()
        .filter(|c| c.decision_id.is_some())
        .map(|c| c.event_time)
        .collect();
    for pair in changes.windows(2) {
        assert!(pair[1] - pair[0] >= 2 * MINUTE, "{changes:?}");
    }
}

#[test]
fn the_quality_guard_takes_traffic_off_a_chosen_model_that_regresses_within_three_windows() {
    let mut sim = start(Mode::Auto);
    let regress_at = 90;
    let b = fleet(regress_at);
    while sim.minute < regress_at {
        sim.tick(&["chat"], &b);
    }
    assert!(sim.weight("chat", "openai", "mini") > 0.95);
    let mut left_at = None;
    for _ in 0..10 {
        sim.tick(&["chat"], &b);
        if left_at.is_none() && sim.weight("chat", "openai", "mini") < 0.95 {
            left_at = Some(sim.minute - regress_at);
        }
    }
    let left_at = left_at.expect("traffic left the regressed model");
    assert!(left_at <= 3, "first guard step {left_at} windows after");
    assert!(
        sim.weight("chat", "openai", "mini") < 1e-9,
        "mini evacuated within 10 windows"
    );
    let guard: Vec<DecisionEvent> = router_decisions(&sim)
        .into_iter()
        .filter(|d| d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_GUARD))
        .filter(|d| d.params[PARAM_FROM_MODEL] == "mini")
        .collect();
    assert!(!guard.is_empty());
    assert!(guard.iter().all(|d| d.params[PARAM_MODEL] == "gpt"));
    assert_eq!(guard[0].evidence.test, "z_quality_floor");
    // The regressed model is not explored again before reexplore_after (30 minutes).
    for _ in 0..20 {
        sim.tick(&["chat"], &b);
        assert!(sim.weight("chat", "openai", "mini") < 1e-9);
    }
}

#[test]
fn a_route_without_quality_scores_is_never_moved_to_a_model_of_unknown_quality() {
    let mut sim = start(Mode::Auto);
    let b = |p: &str, m: &str, minute: i64| Behaviour {
        quality: None,
        ..fleet(i64::MAX)(p, m, minute)
    };
    for _ in 0..60 {
        sim.tick(&["chat"], b);
    }
    assert!(router_decisions(&sim).is_empty());
    assert_eq!(sim.weight("chat", "openai", "gpt"), 1.0);
}

#[test]
fn router_decisions_wait_for_approval_and_replay_identically() {
    let run = || {
        let mut sim = start(Mode::Propose);
        let b = fleet(i64::MAX);
        for _ in 0..30 {
            sim.tick(&["chat"], &b);
        }
        router_decisions(&sim)
    };
    let first = run();
    assert!(!first.is_empty());
    assert!(first.iter().all(|d| d.state == DecisionState::Proposed));
    assert_eq!(first, run());
}

#[test]
fn max_share_caps_a_model_and_the_rest_stays_with_the_next_best() {
    let mut cfg = router_config(Mode::Auto);
    cfg.routes[0].models[1].max_share = 0.6;
    let mut sim = Sim::new(cfg);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = fleet(i64::MAX);
    for _ in 0..120 {
        sim.tick(&["chat"], &b);
        assert!(sim.weight("chat", "openai", "mini") <= 0.6 + 1e-9);
    }
    assert!((sim.weight("chat", "openai", "mini") - 0.6).abs() < 1e-6);
    assert!((sim.weight("chat", "openai", "gpt") - 0.4).abs() < 1e-6);
}
