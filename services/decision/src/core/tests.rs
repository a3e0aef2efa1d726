//! Lifecycle, safety-limit and closed-loop tests of the decision core, driven together with the
//! actuator core through a queue (what one core publishes is consumed by both).

use std::collections::{BTreeMap, VecDeque};

use llmopt_actuator::Actuator;
use llmopt_events::{
    AnyEvent, ChangeKind, ConfigChange, Decision as DecisionEvent, DecisionState, QuantizationJob,
    RouteTarget, Strategy,
};
use llmopt_routing::weight_of;
use llmopt_runtime::{Input, Output, Processor};
use llmopt_transport::LogicalTopic;

use super::Decision;
use crate::config::{
    CheaperCandidate, DecisionConfig, Mode, ModelRef, RoutePolicy, SelfHostedModel,
};
use crate::history::tests::window;

mod router;
mod tuning;

const MINUTE: i64 = 60_000;

#[derive(Clone, Copy)]
struct Behaviour {
    error_rate: f64,
    p95: f64,
    quality: Option<f64>,
    /// Cost of one call (USD).
    cost_per_call: f64,
    /// Share of calls with a quality score.
    scored: f64,
}

const HEALTHY: Behaviour = Behaviour {
    error_rate: 0.01,
    p95: 500.0,
    quality: Some(0.8),
    cost_per_call: 0.001,
    scored: 1.0,
};

/// Decision core + actuator core + a synthetic traffic generator that follows the actuator's
/// routing config: 1000 calls a minute per route, split by weight.
struct Sim {
    decision: Decision,
    actuator: Actuator,
    published: Vec<Output>,
    minute: i64,
    /// Calls a provider/model gets per minute whatever its weight (shadow traffic).
    shadow: BTreeMap<(String, String, String), i64>,
}

fn input(topic: LogicalTopic, event: AnyEvent) -> Input {
    Input {
        topic,
        partition: 0,
        offset: 0,
        id: "in".into(),
        source: "test".into(),
        time_ms: None,
        event,
    }
}

impl Sim {
    fn new(cfg: DecisionConfig) -> Self {
        Self {
            decision: Decision::new(cfg).unwrap(),
            actuator: Actuator::new(),
            published: Vec::new(),
            minute: 0,
            shadow: BTreeMap::new(),
        }
    }

    /// Publishes an event and delivers everything that follows from it, in order. Everything
    /// on the bus (this event included) is recorded in `published`.
    fn publish(&mut self, topic: LogicalTopic, event: AnyEvent) {
        if !matches!(event, AnyEvent::WindowAggregate(_)) {
            self.published.push(Output {
                topic,
                id: "external".into(),
                key: String::new(),
                time_ms: 0,
                event: event.clone(),
            });
        }
        let mut queue = VecDeque::from([(topic, event)]);
        while let Some((topic, event)) = queue.pop_front() {
            let input = input(topic, event);
            let mut outs = Vec::new();
            if self.decision.inputs().contains(&topic) {
                outs.extend(self.decision.process(&input));
            }
            if self.actuator.inputs().contains(&topic) {
                outs.extend(self.actuator.process(&input));
            }
            for o in outs {
                queue.push_back((o.topic, o.event.clone()));
                self.published.push(o);
            }
        }
    }

    fn change(&mut self, route: &str, kind: ChangeKind, targets: &[(&str, &str, f64)], time: i64) {
        let current = self.actuator.config("app", route).map(|c| c.version);
        let version = current.map_or(1, |v| v + 1);
        let change = ConfigChange {
            id: format!("app/{route}/v{version}"),
            event_time: time,
            app: "app".into(),
            route: route.into(),
            version,
            previous_version: current,
            kind,
            decision_id: None,
            targets: targets
                .iter()
                .map(|(p, m, w)| RouteTarget {
                    provider: p.to_string(),
                    model: m.to_string(),
                    weight: *w,
                })
                .collect(),
            params: BTreeMap::new(),
        };
        self.publish(LogicalTopic::ConfigChanges, AnyEvent::ConfigChange(change));
    }

    /// One minute of traffic on `routes`.
    fn tick(&mut self, routes: &[&str], behaviour: impl Fn(&str, &str, i64) -> Behaviour) {
        let jitter = [0.0, 3.0, -3.0, 2.0, -2.0, 1.0, -1.0][(self.minute % 7) as usize];
        for route in routes {
            let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
            if let Some(cfg) = self.actuator.config("app", route) {
                for t in &cfg.targets {
                    counts.insert(
                        (t.provider.clone(), t.model.clone()),
                        (t.weight * 1000.0).round() as i64,
                    );
                }
            }
            for ((r, p, m), n) in &self.shadow {
                if r == route {
                    let c = counts.entry((p.clone(), m.clone())).or_default();
                    *c = (*c).max(*n);
                }
            }
            for ((p, m), count) in counts {
                if count <= 0 {
                    continue;
                }
                let b = behaviour(&p, &m, self.minute);
                let mut w = window(
                    route,
                    &p,
                    &m,
                    self.minute,
                    count,
                    (b.error_rate * count as f64).round() as i64,
                    b.p95 + jitter,
                    b.quality.map(|q| q + jitter * 0.001),
                );
                w.cost_usd = count as f64 * b.cost_per_call;
                if b.quality.is_some() {
                    let q = w.quality_sum / w.quality_count.max(1) as f64;
                    w.quality_count = (count as f64 * b.scored).round() as i64;
                    w.quality_sum = q * w.quality_count as f64;
                }
                self.publish(LogicalTopic::Windows, AnyEvent::WindowAggregate(w));
            }
        }
        self.minute += 1;
    }

    fn decisions(&self) -> Vec<(&str, &DecisionEvent)> {
        self.published
            .iter()
            .filter_map(|o| match &o.event {
                AnyEvent::Decision(d) => Some((o.id.as_str(), d)),
                _ => None,
            })
            .collect()
    }

    fn of_strategy(&self, s: Strategy) -> Vec<(&str, &DecisionEvent)> {
        self.decisions()
            .into_iter()
            .filter(|(_, d)| d.strategy == s)
            .collect()
    }

    fn states(&self, id: &str) -> Vec<DecisionState> {
        self.decisions()
            .into_iter()
            .filter(|(_, d)| d.id == id)
            .map(|(_, d)| d.state)
            .collect()
    }

    fn changes(&self) -> Vec<&ConfigChange> {
        self.published
            .iter()
            .filter_map(|o| match &o.event {
                AnyEvent::ConfigChange(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn jobs(&self) -> Vec<(&Output, &QuantizationJob)> {
        self.published
            .iter()
            .filter_map(|o| match &o.event {
                AnyEvent::QuantizationJob(j) => Some((o, j)),
                _ => None,
            })
            .collect()
    }

    fn weight(&self, route: &str, provider: &str, model: &str) -> f64 {
        self.actuator
            .config("app", route)
            .map_or(0.0, |c| weight_of(&c.targets, provider, model))
    }
}

fn policy(route: &str) -> RoutePolicy {
    RoutePolicy {
        app: "app".into(),
        route: route.into(),
        fallback: Some(ModelRef {
            provider: "anthropic".into(),
            model: "claude".into(),
        }),
        ..RoutePolicy::default()
    }
}

fn base(mode: Mode) -> DecisionConfig {
    let mut c = DecisionConfig {
        mode,
        routes: vec![policy("chat")],
        ..DecisionConfig::default()
    };
    c.limits.cooldown_ms = 2 * MINUTE;
    c
}

/// The primary fails from minute `from` on.
fn burst(from: i64) -> impl Fn(&str, &str, i64) -> Behaviour {
    move |_, model, minute| {
        if model == "gpt" && minute >= from {
            Behaviour {
                error_rate: 0.4,
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    }
}

fn run_until(
    sim: &mut Sim,
    max_minutes: i64,
    behaviour: &impl Fn(&str, &str, i64) -> Behaviour,
    done: impl Fn(&Sim) -> bool,
) -> bool {
    for _ in 0..max_minutes {
        sim.tick(&["chat"], behaviour);
        if done(sim) {
            return true;
        }
    }
    false
}

fn with_state(sim: &Sim, s: Strategy, state: DecisionState) -> Option<DecisionEvent> {
    sim.of_strategy(s)
        .into_iter()
        .find(|(_, d)| d.state == state)
        .map(|(_, d)| d.clone())
}

#[test]
fn propose_approve_applying_verifying_succeeded() {
    let mut sim = Sim::new(base(Mode::Propose));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = burst(6);
    assert!(run_until(&mut sim, 10, &b, |s| !s.decisions().is_empty()));
    let (out_id, proposed) = sim.decisions()[0];
    let proposed = proposed.clone();
    assert_eq!(proposed.state, DecisionState::Proposed);
    assert_eq!(proposed.strategy, Strategy::Failover);
    assert_eq!(
        proposed.id,
        format!("failover/app/chat/{}", proposed.event_time)
    );
    assert_eq!(out_id, format!("{}/PROPOSED/0", proposed.id));
    assert_eq!(sim.changes().len(), 1, "nothing applied while proposed");

    // Our own echo changes nothing.
    let before = sim.published.len();
    sim.publish(
        LogicalTopic::Decisions,
        AnyEvent::Decision(proposed.clone()),
    );
    assert_eq!(sim.published.len(), before + 1, "only the echo itself");
    sim.published.pop();

    // The operator approves.
    let approved = DecisionEvent {
        state: DecisionState::Approved,
        ..proposed.clone()
    };
    sim.publish(LogicalTopic::Decisions, AnyEvent::Decision(approved));
    let changes = sim.changes();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[1].decision_id.as_deref(),
        Some(proposed.id.as_str())
    );
    assert!((weight_of(&changes[1].targets, "anthropic", "claude") - 0.5).abs() < 1e-9);
    assert_eq!(
        sim.states(&proposed.id),
        vec![
            DecisionState::Proposed,
            DecisionState::Approved,
            DecisionState::Applying,
            DecisionState::Verifying
        ]
    );
    // Verification waits for the evaluation windows, then succeeds: the moved traffic is
    // served far better by the fallback.
    let verifying_at = sim.minute;
    assert!(run_until(&mut sim, 10, &b, |s| s
        .decision
        .open_decision(&proposed.id)
        .is_none()));
    assert!(sim.minute - verifying_at > sim.decision.config().evaluation_windows as i64);
    assert_eq!(
        sim.states(&proposed.id).last(),
        Some(&DecisionState::Succeeded)
    );
    let succeeded = sim
        .decisions()
        .into_iter()
        .find(|(_, d)| d.state == DecisionState::Succeeded)
        .map(|(id, _)| id.to_string());
    assert_eq!(succeeded, Some(format!("{}/SUCCEEDED/0", proposed.id)));
}

#[test]
fn propose_then_reject() {
    let mut sim = Sim::new(base(Mode::Propose));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = burst(4);
    assert!(run_until(&mut sim, 10, &b, |s| !s.decisions().is_empty()));
    let proposed = sim.decisions()[0].1.clone();
    let rejected = DecisionEvent {
        state: DecisionState::Rejected,
        ..proposed.clone()
    };
    let before = sim.published.len();
    sim.publish(LogicalTopic::Decisions, AnyEvent::Decision(rejected));
    assert_eq!(
        sim.published.len(),
        before + 1,
        "the operator's event is the record"
    );
    assert!(sim.decision.open_decision(&proposed.id).is_none());
    // A late approval of a rejected decision is not accepted by the core.
    let approved = DecisionEvent {
        state: DecisionState::Approved,
        ..proposed.clone()
    };
    let out = sim.decision.process(&input(
        LogicalTopic::Decisions,
        AnyEvent::Decision(approved),
    ));
    assert!(out.is_empty());
    assert_eq!(sim.changes().len(), 1);
}

#[test]
fn propose_then_expire() {
    let mut cfg = base(Mode::Propose);
    cfg.proposal_ttl_ms = 3 * MINUTE;
    let mut sim = Sim::new(cfg);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = burst(4);
    assert!(run_until(&mut sim, 10, &b, |s| !s.decisions().is_empty()));
    let proposed = sim.decisions()[0].1.clone();
    // Not before the TTL.
    sim.tick(&["chat"], &b);
    sim.tick(&["chat"], &b);
    assert_eq!(sim.states(&proposed.id), vec![DecisionState::Proposed]);
    sim.tick(&["chat"], &b);
    assert_eq!(
        sim.states(&proposed.id),
        vec![DecisionState::Proposed, DecisionState::Expired]
    );
    let (out_id, expired) = sim
        .decisions()
        .into_iter()
        .find(|(_, d)| d.state == DecisionState::Expired)
        .unwrap();
    assert_eq!(out_id, format!("{}/EXPIRED/0", proposed.id));
    assert_eq!(expired.event_time, proposed.event_time + 3 * MINUTE);
    assert!(sim.decision.open_decision(&proposed.id).is_none());
    // An approval after expiry is ignored.
    let approved = DecisionEvent {
        state: DecisionState::Approved,
        ..proposed
    };
    assert!(sim
        .decision
        .process(&input(
            LogicalTopic::Decisions,
            AnyEvent::Decision(approved)
        ))
        .is_empty());
}

fn canary_config(mode: Mode) -> DecisionConfig {
    let mut cfg = base(mode);
    cfg.canary.windows_per_step = 2;
    for p in &mut cfg.routes {
        p.cheaper = Some(CheaperCandidate {
            provider: "openai".into(),
            model: "mini".into(),
            quality_margin: 0.05,
        });
    }
    cfg
}

fn mini_ok(_: &str, model: &str, _: i64) -> Behaviour {
    if model == "mini" {
        Behaviour {
            p95: 300.0,
            quality: Some(0.79),
            ..HEALTHY
        }
    } else {
        HEALTHY
    }
}

#[test]
fn canary_steps_advance_only_after_verification() {
    let mut sim = Sim::new(canary_config(Mode::Auto));
    sim.shadow
        .insert(("chat".into(), "openai".into(), "mini".into()), 50);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let mut approvals: Vec<(i64, String)> = Vec::new();
    for _ in 0..40 {
        sim.tick(&["chat"], mini_ok);
        for (_, d) in sim.of_strategy(Strategy::CheaperModelCanary) {
            if d.state == DecisionState::Approved {
                let step = d.params["step"].clone();
                if !approvals.iter().any(|(_, s)| *s == step) {
                    approvals.push((sim.minute, step));
                }
            }
        }
    }
    let steps: Vec<&str> = approvals.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(steps, vec!["0", "1", "2", "3"]);
    let wps = sim.decision.config().canary.windows_per_step as i64;
    for pair in approvals.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 > wps,
            "step {} came {} minutes after step {}",
            pair[1].1,
            pair[1].0 - pair[0].0,
            pair[0].1
        );
    }
    let weights: Vec<f64> = sim
        .changes()
        .iter()
        .filter(|c| c.kind == ChangeKind::CanaryStep)
        .map(|c| weight_of(&c.targets, "openai", "mini"))
        .collect();
    assert_eq!(weights, vec![0.05, 0.25, 0.5, 1.0]);
    let id = sim.of_strategy(Strategy::CheaperModelCanary)[0]
        .1
        .id
        .clone();
    assert_eq!(sim.states(&id).last(), Some(&DecisionState::Succeeded));
    assert_eq!(sim.weight("chat", "openai", "mini"), 1.0);
    assert_eq!(sim.weight("chat", "openai", "gpt"), 0.0);
}

#[test]
fn failed_canary_step_rolls_back() {
    let mut sim = Sim::new(canary_config(Mode::Auto));
    sim.shadow
        .insert(("chat".into(), "openai".into(), "mini".into()), 50);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let mut degrade_at = i64::MAX;
    for _ in 0..20 {
        let d = degrade_at;
        sim.tick(&["chat"], move |p, m, minute| {
            if m == "mini" && minute >= d {
                Behaviour {
                    p95: 3000.0,
                    ..mini_ok(p, m, minute)
                }
            } else {
                mini_ok(p, m, minute)
            }
        });
        if degrade_at == i64::MAX
            && with_state(&sim, Strategy::CheaperModelCanary, DecisionState::Approved).is_some()
        {
            degrade_at = sim.minute;
        }
    }
    let rolled = with_state(
        &sim,
        Strategy::CheaperModelCanary,
        DecisionState::RolledBack,
    )
    .expect("rollback");
    assert_eq!(rolled.action, "rollback_to_version");
    assert_eq!(rolled.params["target_version"], "1");
    assert_eq!(rolled.params["step"], "0");
    assert_eq!(
        sim.states(&rolled.id),
        vec![
            DecisionState::Approved,
            DecisionState::Applying,
            DecisionState::Verifying,
            DecisionState::RolledBack
        ],
        "no second step after a failed verification"
    );
    let last = *sim.changes().last().unwrap();
    assert_eq!(last.kind, ChangeKind::Rollback);
    assert_eq!(last.decision_id.as_deref(), Some(rolled.id.as_str()));
    assert_eq!(sim.weight("chat", "openai", "gpt"), 1.0);
    assert_eq!(sim.weight("chat", "openai", "mini"), 0.0);
    // Not canaried again.
    assert_eq!(
        sim.of_strategy(Strategy::CheaperModelCanary)
            .iter()
            .filter(|(_, d)| d.state == DecisionState::Approved)
            .count(),
        1
    );
}

#[test]
fn a_breaching_model_fails_over_without_waiting_for_the_cooldown() {
    let mut cfg = base(Mode::Auto);
    cfg.limits.cooldown_ms = 10 * MINUTE;
    let mut sim = Sim::new(cfg);
    sim.change(
        "chat",
        ChangeKind::Initial,
        &[("openai", "gpt", 1.0)],
        5 * MINUTE,
    );
    let b = burst(0);
    assert!(run_until(&mut sim, 20, &b, |s| !s.decisions().is_empty()));
    let first = sim.decisions()[0].1.clone();
    assert_eq!(first.strategy, Strategy::Failover);
    assert!(
        first.event_time < 15 * MINUTE,
        "a failing model does not wait for the cooldown of the change at minute 5: {}",
        first.event_time / MINUTE
    );
}

#[test]
fn max_shift_limits_failover() {
    let mut cfg = base(Mode::Auto);
    cfg.limits.max_traffic_shift = 0.2;
    let mut sim = Sim::new(cfg);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = burst(3);
    assert!(run_until(&mut sim, 10, &b, |s| s.changes().len() > 1));
    let c = sim.changes()[1];
    assert!((weight_of(&c.targets, "anthropic", "claude") - 0.2).abs() < 1e-9);
    assert!((weight_of(&c.targets, "openai", "gpt") - 0.8).abs() < 1e-9);
    let d = with_state(&sim, Strategy::Failover, DecisionState::Approved).unwrap();
    assert!(d.reason.contains("max_traffic_shift"), "{}", d.reason);
}

#[test]
fn max_concurrent_canaries() {
    let mut cfg = canary_config(Mode::Propose);
    cfg.routes.push(RoutePolicy {
        cheaper: cfg.routes[0].cheaper.clone(),
        ..policy("search")
    });
    let mut sim = Sim::new(cfg);
    for route in ["chat", "search"] {
        sim.shadow
            .insert((route.into(), "openai".into(), "mini".into()), 50);
        sim.change(route, ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    }
    for _ in 0..10 {
        sim.tick(&["chat", "search"], mini_ok);
    }
    let proposed = |sim: &Sim| -> Vec<DecisionEvent> {
        sim.of_strategy(Strategy::CheaperModelCanary)
            .into_iter()
            .filter(|(_, d)| d.state == DecisionState::Proposed)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let proposals = proposed(&sim);
    assert_eq!(proposals.len(), 1, "one canary at a time");
    let first = proposals[0].clone();
    let rejected = DecisionEvent {
        state: DecisionState::Rejected,
        ..first.clone()
    };
    sim.publish(LogicalTopic::Decisions, AnyEvent::Decision(rejected));
    sim.tick(&["chat", "search"], mini_ok);
    let proposals = proposed(&sim);
    assert_eq!(proposals.len(), 2);
    assert_ne!(proposals[1].route, first.route, "the other route's turn");
}

fn slow_new_model(_: &str, model: &str, _: i64) -> Behaviour {
    if model == "gpt-new" {
        Behaviour {
            p95: 900.0,
            ..HEALTHY
        }
    } else {
        HEALTHY
    }
}

#[test]
fn regression_rollback_after_manual_change() {
    let mut sim = Sim::new(base(Mode::Auto));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    for _ in 0..6 {
        sim.tick(&["chat"], slow_new_model);
    }
    sim.change(
        "chat",
        ChangeKind::Manual,
        &[("openai", "gpt-new", 1.0)],
        6 * MINUTE,
    );
    assert!(run_until(&mut sim, 6, &slow_new_model, |s| !s
        .decisions()
        .is_empty()));
    let d = sim.decisions()[0].1.clone();
    assert_eq!(d.strategy, Strategy::RegressionRollback);
    assert_eq!(d.state, DecisionState::Approved);
    assert_eq!(d.action, "rollback_to_version");
    assert_eq!(d.params["target_version"], "1");
    assert_eq!(d.evidence.test, "welch_t");
    assert!(d.evidence.p_value.unwrap() < 0.01);
    let last = *sim.changes().last().unwrap();
    assert_eq!(last.kind, ChangeKind::Rollback);
    assert_eq!(last.version, 3);
    assert_eq!(sim.weight("chat", "openai", "gpt"), 1.0);
    assert!(run_until(&mut sim, 6, &slow_new_model, |s| s
        .decision
        .open_decision(&d.id)
        .is_none()));
    assert_eq!(sim.states(&d.id).last(), Some(&DecisionState::Succeeded));
}

#[test]
fn harmless_manual_change_no_rollback() {
    let mut sim = Sim::new(base(Mode::Auto));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    for _ in 0..6 {
        sim.tick(&["chat"], slow_new_model);
    }
    sim.change(
        "chat",
        ChangeKind::Manual,
        &[("openai", "gpt-2", 1.0)],
        6 * MINUTE,
    );
    for _ in 0..10 {
        sim.tick(&["chat"], slow_new_model);
    }
    assert!(sim.decisions().is_empty());
}

fn quantize_config(mode: Mode, max_cost: f64) -> DecisionConfig {
    DecisionConfig {
        mode,
        routes: vec![RoutePolicy {
            app: "app".into(),
            route: "chat".into(),
            self_hosted: vec![SelfHostedModel {
                provider: "vllm".into(),
                model: "llama".into(),
                model_location: "s3://m/llama".into(),
                max_cost_per_call_usd: Some(max_cost),
                max_latency_p95_ms: None,
            }],
            ..RoutePolicy::default()
        }],
        ..DecisionConfig::default()
    }
}

#[test]
fn quantization_requested_once_per_model() {
    let mut sim = Sim::new(quantize_config(Mode::Auto, 0.0005));
    sim.change("chat", ChangeKind::Initial, &[("vllm", "llama", 1.0)], 0);
    for _ in 0..15 {
        sim.tick(&["chat"], |_, _, _| HEALTHY);
    }
    let qs = sim.of_strategy(Strategy::QuantizationRequest);
    let states: Vec<DecisionState> = qs.iter().map(|(_, d)| d.state).collect();
    assert_eq!(
        states,
        vec![DecisionState::Approved, DecisionState::Succeeded]
    );
    let id = qs[0].1.id.clone();
    assert_eq!(qs[0].1.action, "quantize");
    let jobs = sim.jobs();
    assert_eq!(jobs.len(), 1);
    let (out, job) = jobs[0];
    assert_eq!(out.topic, LogicalTopic::QuantizationJobs);
    assert_eq!(out.key, "llama");
    assert_eq!(job.job_id, format!("{id}/job"));
    assert_eq!(job.decision_id.as_deref(), Some(id.as_str()));
    assert_eq!(sim.changes().len(), 1, "quantization changes no routing");
}

#[test]
fn quantization_waits_for_approval_in_propose_mode() {
    let mut sim = Sim::new(quantize_config(Mode::Propose, 0.0005));
    sim.change("chat", ChangeKind::Initial, &[("vllm", "llama", 1.0)], 0);
    for _ in 0..8 {
        sim.tick(&["chat"], |_, _, _| HEALTHY);
    }
    let proposed = sim.decisions()[0].1.clone();
    assert_eq!(proposed.state, DecisionState::Proposed);
    assert!(sim.jobs().is_empty());
    let approved = DecisionEvent {
        state: DecisionState::Approved,
        ..proposed.clone()
    };
    sim.publish(LogicalTopic::Decisions, AnyEvent::Decision(approved));
    assert_eq!(sim.jobs().len(), 1);
    assert_eq!(
        sim.states(&proposed.id).last(),
        Some(&DecisionState::Succeeded)
    );
}

#[test]
fn within_cost_target_no_quantization() {
    let mut sim = Sim::new(quantize_config(Mode::Auto, 0.002));
    sim.change("chat", ChangeKind::Initial, &[("vllm", "llama", 1.0)], 0);
    for _ in 0..15 {
        sim.tick(&["chat"], |_, _, _| HEALTHY);
    }
    assert!(sim.decisions().is_empty());
    assert!(sim.jobs().is_empty());
}

#[test]
fn replay_is_deterministic() {
    let run = || {
        let mut sim = Sim::new(base(Mode::Auto));
        sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
        let b = burst(5);
        for _ in 0..25 {
            sim.tick(&["chat"], &b);
        }
        sim.published
    };
    let (a, b) = (run(), run());
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// The closed loop: windows → decision core → actuator core → config changes → (traffic follows
/// the config) → windows. An error burst on the primary fails the route over to its fallback,
/// half at a time (max shift 0.5): the evacuation goes on at the next window, without waiting
/// for the cooldown or the first step's verification.
#[test]
fn closed_loop_failover_evacuates_the_primary_in_steps_one_window_apart() {
    let mut sim = Sim::new(base(Mode::Auto));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let b = burst(8);
    for _ in 0..8 {
        sim.tick(&["chat"], &b);
    }
    assert!(sim.decisions().is_empty(), "healthy: no decision");
    assert!(run_until(&mut sim, 5, &b, |s| s.changes().len() > 1));
    let first_at = sim.minute;
    let first = sim.changes()[1].clone();
    assert_eq!(first.kind, ChangeKind::Apply);
    assert_eq!(first.version, 2);
    assert!((weight_of(&first.targets, "anthropic", "claude") - 0.5).abs() < 1e-9);
    let decision = with_state(&sim, Strategy::Failover, DecisionState::Approved).unwrap();
    assert_eq!(first.decision_id.as_deref(), Some(decision.id.as_str()));
    assert_eq!(decision.evidence.test, "binomial_exact");
    // The primary keeps failing: the rest moves at the next window.
    assert!(run_until(&mut sim, 1, &b, |s| s.weight(
        "chat",
        "anthropic",
        "claude"
    ) >= 1.0));
    assert_eq!(sim.minute, first_at + 1, "left within 2 windows");
    let succeeded = sim
        .of_strategy(Strategy::Failover)
        .into_iter()
        .filter(|(_, d)| d.state == DecisionState::Succeeded)
        .count();
    assert_eq!(
        succeeded, 0,
        "the second step did not wait for the first's verification"
    );
    assert_eq!(sim.weight("chat", "openai", "gpt"), 0.0);
    for c in sim.changes() {
        let s: f64 = c.targets.iter().map(|t| t.weight).sum();
        assert!((s - 1.0).abs() < 1e-9);
    }
    // Both steps are verified in the end.
    assert!(run_until(&mut sim, 10, &b, |s| s
        .of_strategy(Strategy::Failover)
        .into_iter()
        .filter(|(_, d)| d.state == DecisionState::Succeeded)
        .count()
        == 2));
}

/// A checkpoint taken mid-incident (a failover half applied, its verification running) and
/// restored into fresh cores continues exactly like the cores that never stopped.
#[test]
fn restored_snapshots_continue_like_the_uninterrupted_cores() {
    let b = burst(5);
    let mut sim = Sim::new(base(Mode::Auto));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    for _ in 0..10 {
        sim.tick(&["chat"], &b);
    }
    assert!(!sim.decisions().is_empty(), "an incident is under way");
    let mut restored = Sim::new(base(Mode::Auto));
    restored
        .decision
        .restore_whole(&sim.decision.checkpoint_whole().expect("decision state"))
        .expect("restore decision");
    restored
        .actuator
        .restore_whole(&sim.actuator.checkpoint_whole().expect("actuator state"))
        .expect("restore actuator");
    restored.minute = sim.minute;
    restored.shadow = sim.shadow.clone();
    let before = sim.published.len();
    for _ in 0..15 {
        sim.tick(&["chat"], &b);
        restored.tick(&["chat"], &b);
    }
    assert!(sim.published.len() > before, "the incident went on");
    assert_eq!(restored.published, sim.published[before..].to_vec());
    assert_eq!(
        restored.decision.checkpoint_whole(),
        sim.decision.checkpoint_whole(),
        "same state at the end"
    );
    assert!(
        restored.decision.restore_whole(b"garbage").is_err(),
        "a corrupt snapshot is refused"
    );
}

/// `model` fails 40 % of its calls from minute `from` until minute `to`.
fn outage(model: &'static str, from: i64, to: i64) -> impl Fn(&str, &str, i64) -> Behaviour {
    move |_, m, minute| {
        if m == model && minute >= from && minute < to {
            Behaviour {
                error_rate: 0.4,
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    }
}

fn phase_of(d: &DecisionEvent) -> Option<&str> {
    d.params
        .get(crate::strategies::failover::PARAM_PHASE)
        .map(String::as_str)
}

/// A provider outage: the route fails over, a probe during the outage is rolled back (the
/// circuit stays open), and once the primary recovers a probe holds and the rest of the
/// traffic returns in steps, each verified.
#[test]
fn after_an_outage_traffic_returns_to_the_primary_through_a_probe_and_steps() {
    let mut sim = Sim::new(base(Mode::Auto));
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let recovery = 40;
    let b = outage("gpt", 8, recovery);
    assert!(run_until(&mut sim, 30, &b, |s| s
        .weight("chat", "openai", "gpt")
        == 0.0));
    let left_at = sim.minute;
    assert!(
        left_at < recovery,
        "left during the outage (minute {left_at})"
    );
    while sim.minute < recovery {
        sim.tick(&["chat"], &b);
    }
    let probes_in_outage: Vec<DecisionEvent> = sim
        .of_strategy(Strategy::Failover)
        .into_iter()
        .filter(|(_, d)| phase_of(d) == Some("failback_probe"))
        .map(|(_, d)| d.clone())
        .collect();
    assert!(
        !probes_in_outage.is_empty(),
        "a probe ran during the outage"
    );
    assert!(
        probes_in_outage
            .iter()
            .any(|d| d.state == DecisionState::RolledBack),
        "a probe of the failing primary is rolled back"
    );
    assert!(
        probes_in_outage
            .iter()
            .all(|d| d.state != DecisionState::Succeeded),
        "no probe holds while the primary fails"
    );
    assert!(
        sim.weight("chat", "openai", "gpt") < 0.5,
        "the failing primary did not get its traffic back"
    );
    assert!(
        run_until(&mut sim, 30, &b, |s| s.weight("chat", "openai", "gpt")
            >= 1.0 - 1e-9),
        "traffic is back on the primary"
    );
    let back_after = sim.minute - recovery;
    eprintln!("traffic back on the primary {back_after} windows after recovery");
    // At most: a probe started just before recovery and judged on its first window, the next
    // probe after probe_after (2), its windows (2), two steps of 0.5 (1 each), and a window of
    // lag for each judgement.
    assert!(back_after <= 10, "back {back_after} windows after recovery");
    let decisions = sim.of_strategy(Strategy::Failover);
    let held = decisions
        .iter()
        .filter(|(_, d)| d.state == DecisionState::Succeeded)
        .filter(|(_, d)| phase_of(d).is_some())
        .count();
    assert!(held >= 2, "the probe and at least one step held: {held}");
    let last_probe = decisions
        .iter()
        .rev()
        .filter(|(_, d)| phase_of(d) == Some("failback_probe"))
        .find(|(_, d)| d.state == DecisionState::Approved)
        .expect("probe");
    assert_eq!(last_probe.1.evidence.test, "circuit_breaker");
    assert!(
        last_probe.1.reason.contains("half-open"),
        "{}",
        last_probe.1.reason
    );
    // Every decision is in the routing contract's vocabulary.
    for (id, d) in sim.decisions() {
        if let Err(e) = llmopt_routing::parse_action(d) {
            panic!("{id}: {e}");
        }
    }
    // Closed: the primary failing again fails over again.
    let again = outage("gpt", sim.minute + 15, i64::MAX);
    assert!(run_until(&mut sim, 40, &again, |s| s
        .weight("chat", "openai", "gpt")
        < 1.0));
}

/// The fallback fails too: its traffic goes to the next healthy entry of the chain, never back
/// to the failing primary, and no failover ever moves traffic onto a model that breaches.
#[test]
fn a_fallback_that_fails_too_hands_its_traffic_to_the_next_entry_of_the_chain() {
    let mut cfg = base(Mode::Auto);
    cfg.routes[0].fallbacks = vec![ModelRef {
        provider: "google".into(),
        model: "gemini".into(),
    }];
    cfg.failback.enabled = false;
    let mut sim = Sim::new(cfg);
    sim.change("chat", ChangeKind::Initial, &[("openai", "gpt", 1.0)], 0);
    let failing =
        |m: &str, minute: i64| (m == "gpt" && minute >= 5) || (m == "claude" && minute >= 20);
    let b = move |_: &str, m: &str, minute: i64| {
        if failing(m, minute) {
            Behaviour {
                error_rate: 0.4,
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    };
    assert!(run_until(&mut sim, 20, &b, |s| s.weight(
        "chat",
        "anthropic",
        "claude"
    ) >= 1.0));
    assert!(
        run_until(&mut sim, 30, &b, |s| s.weight("chat", "google", "gemini")
            >= 1.0),
        "the second fallback took the traffic"
    );
    assert_eq!(sim.weight("chat", "openai", "gpt"), 0.0);
    for (_, d) in sim.of_strategy(Strategy::Failover) {
        if d.state != DecisionState::Approved {
            continue;
        }
        let to = d
            .params
            .get("model")
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            !failing(to, d.event_time / MINUTE),
            "{} moved traffic onto failing {to}",
            d.id
        );
    }
}
