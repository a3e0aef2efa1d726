//! Failover: a provider/model whose error rate over its last windows is significantly above its
//! SLO loses traffic to the first healthy entry of the route's fallback chain, at most
//! `max_traffic_shift` per decision (the core lets a further decision move the rest at the next
//! window if it still fails). A fallback that breaches in turn hands its traffic to the next
//! entry.
//!
//! Fail-back: the model a failover took traffic from gets it back once it recovers, first a
//! probe share (a circuit breaker's half-open state), then the rest in steps; the core keeps
//! the circuits and this module builds their proposals.

use std::collections::BTreeMap;

use llmopt_events::Strategy;
use llmopt_routing::{
    shift_traffic, targets_to_param, weight_of, ACTION_SHIFT_TRAFFIC, PARAM_FROM_MODEL,
    PARAM_FROM_PROVIDER, PARAM_MODEL, PARAM_PROVIDER, PARAM_SHIFT, PARAM_TARGETS,
};

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::config::{DecisionConfig, ModelRef};
use crate::history::{ModelKey, WindowPoint};
use crate::stats::{binomial_greater, TestResult};

/// Param of a failover decision that returns traffic: [`PHASE_PROBE`] or [`PHASE_RETURN`].
/// Failovers away from a breaching model carry no phase.
pub const PARAM_PHASE: &str = "phase";
/// A fail-back probe: a small share goes back to the recovered model (half-open).
pub const PHASE_PROBE: &str = "failback_probe";
/// A fail-back step after a probe held.
pub const PHASE_RETURN: &str = "failback";

/// A provider/model breaching its error-rate SLO over some windows.
#[derive(Debug, Clone, Copy)]
pub struct Breach {
    /// Observed error rate.
    pub rate: f64,
    /// The SLO.
    pub slo: f64,
    /// Failed calls.
    pub errors: i64,
    /// Calls.
    pub calls: i64,
    /// The exact binomial test against the SLO.
    pub result: TestResult,
}

/// Whether `points` of `provider`/`model` breach its SLO: enough calls
/// (`failover_min_calls`), a rate above the SLO, significantly so at `alpha`.
pub fn breach(
    points: &[&WindowPoint],
    provider: &str,
    model: &str,
    cfg: &DecisionConfig,
) -> Option<Breach> {
    let errors: i64 = points.iter().map(|p| p.error_count).sum();
    let calls: i64 = points.iter().map(|p| p.count).sum();
    if calls < cfg.failover_min_calls {
        return None;
    }
    let slo = cfg.error_slo.for_model(provider, model);
    let rate = errors as f64 / calls as f64;
    let result = binomial_greater(errors, calls, slo)?;
    (rate > slo && result.significant(cfg.alpha)).then_some(Breach {
        rate,
        slo,
        errors,
        calls,
        result,
    })
}

/// Proposes a traffic shift away from `provider`/`model` if it breaches its error-rate SLO, to
/// the first entry of the fallback chain that is not the failing model and not in `avoid`
/// (models breaching elsewhere, or this route failed away from and has not taken back).
pub fn evaluate(
    view: &RouteView<'_>,
    provider: &str,
    model: &str,
    avoid: &[ModelKey],
) -> Option<Proposal> {
    let cfg = view.config;
    let chain = view.policy?.fallback_chain();
    let excluded = |m: &ModelRef| {
        (m.provider == provider && m.model == model)
            || avoid.iter().any(|(p, n)| *p == m.provider && *n == m.model)
    };
    let fallback = chain.into_iter().find(|m| {
        !excluded(m)
            && breach(
                &view
                    .history
                    .last_points(&m.provider, &m.model, cfg.failover_windows),
                &m.provider,
                &m.model,
                cfg,
            )
            .is_none()
    })?;
    let current_weight = weight_of(&view.targets, provider, model);
    if current_weight <= 0.0 {
        return None;
    }
    let points = view
        .history
        .last_points(provider, model, cfg.failover_windows);
    if points.len() < cfg.failover_windows {
        return None;
    }
    let found = breach(&points, provider, model, cfg)?;
    let shift = current_weight.min(cfg.limits.max_traffic_shift);
    let new_targets = shift_traffic(
        &view.targets,
        (provider, model),
        (&fallback.provider, &fallback.model),
        shift,
    )
    .ok()?;
    let mut params = BTreeMap::new();
    params.insert(PARAM_FROM_PROVIDER.to_string(), provider.to_string());
    params.insert(PARAM_FROM_MODEL.to_string(), model.to_string());
    params.insert(PARAM_PROVIDER.to_string(), fallback.provider.clone());
    params.insert(PARAM_MODEL.to_string(), fallback.model.clone());
    params.insert(PARAM_SHIFT.to_string(), fmt_num(shift));
    params.insert(PARAM_TARGETS.to_string(), targets_to_param(&new_targets));
    let mut metrics = BTreeMap::new();
    metrics.insert("error_rate".to_string(), found.rate);
    metrics.insert("slo".to_string(), found.slo);
    metrics.insert("errors".to_string(), found.errors as f64);
    metrics.insert("calls".to_string(), found.calls as f64);
    metrics.insert("windows".to_string(), points.len() as f64);
    metrics.insert("current_weight".to_string(), current_weight);
    metrics.insert("shift".to_string(), shift);
    let partial = if shift < current_weight {
        format!(
            " (limited by max_traffic_shift; {} stays)",
            fmt_num(current_weight - shift)
        )
    } else {
        String::new()
    };
    Some(Proposal {
        strategy: Strategy::Failover,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_SHIFT_TRAFFIC.to_string(),
        params,
        reason: format!(
            "{provider}/{model} error rate {:.2}% over {} windows breaches SLO {:.2}% (p={:.3e}); \
             shifting {} of traffic to {}/{}{partial}",
            found.rate * 100.0,
            points.len(),
            found.slo * 100.0,
            found.result.p_value,
            fmt_num(shift),
            fallback.provider,
            fallback.model,
        ),
        evidence: evidence("binomial_exact", Some(found.result), metrics),
        caused_by: points.iter().map(|p| p.event_id.clone()).collect(),
        trigger_time: view.trigger_time,
        job: None,
    })
}

/// One step of a fail-back, as the core's circuit decided it.
#[derive(Debug, Clone, Copy)]
pub struct FailbackStep<'a> {
    /// The model a failover took traffic from.
    pub to: (&'a str, &'a str),
    /// The model holding that traffic now.
    pub from: (&'a str, &'a str),
    /// Share moved by this step.
    pub shift: f64,
    /// Share still owed before this step.
    pub owed: f64,
    /// Whether this is the probe (no probe has held yet).
    pub probe: bool,
}

/// A failover decision moving `step.shift` of the route back from `step.from` to `step.to`.
/// `fleet` are `step.to`'s recent windows on the routes that still send it traffic: they show
/// whether the model recovered, when there are any.
pub fn failback(
    view: &RouteView<'_>,
    step: FailbackStep<'_>,
    fleet: &[&WindowPoint],
) -> Option<Proposal> {
    let (provider, model) = step.to;
    let new_targets = shift_traffic(&view.targets, step.from, step.to, step.shift).ok()?;
    let mut params = BTreeMap::new();
    params.insert(PARAM_FROM_PROVIDER.to_string(), step.from.0.to_string());
    params.insert(PARAM_FROM_MODEL.to_string(), step.from.1.to_string());
    params.insert(PARAM_PROVIDER.to_string(), provider.to_string());
    params.insert(PARAM_MODEL.to_string(), model.to_string());
    params.insert(PARAM_SHIFT.to_string(), fmt_num(step.shift));
    params.insert(PARAM_TARGETS.to_string(), targets_to_param(&new_targets));
    let phase = if step.probe {
        PHASE_PROBE
    } else {
        PHASE_RETURN
    };
    params.insert(PARAM_PHASE.to_string(), phase.to_string());
    let mut metrics = BTreeMap::new();
    metrics.insert("owed".to_string(), step.owed);
    metrics.insert("shift".to_string(), step.shift);
    let errors: i64 = fleet.iter().map(|p| p.error_count).sum();
    let calls: i64 = fleet.iter().map(|p| p.count).sum();
    let slo = view.config.error_slo.for_model(provider, model);
    metrics.insert("slo".to_string(), slo);
    let fleet_note = if calls > 0 {
        let rate = errors as f64 / calls as f64;
        metrics.insert("fleet_error_rate".to_string(), rate);
        metrics.insert("fleet_calls".to_string(), calls as f64);
        format!(
            "; its recent windows across the fleet: {:.2}% errors in {calls} calls",
            rate * 100.0
        )
    } else {
        String::new()
    };
    let rest = fmt_num(step.owed - step.shift);
    let reason = if step.probe {
        format!(
            "circuit half-open: probing {provider}/{model} with {} of traffic from {}/{} \
             ({} was moved away by failover{fleet_note}); rolled back if it does worse",
            fmt_num(step.shift),
            step.from.0,
            step.from.1,
            fmt_num(step.owed),
        )
    } else {
        format!(
            "fail-back probe held: returning {} of traffic to {provider}/{model} from {}/{} \
             ({rest} still owed after this step{fleet_note})",
            fmt_num(step.shift),
            step.from.0,
            step.from.1,
        )
    };
    Some(Proposal {
        strategy: Strategy::Failover,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_SHIFT_TRAFFIC.to_string(),
        params,
        reason,
        evidence: evidence("circuit_breaker", None, metrics),
        caused_by: fleet.iter().map(|p| p.event_id.clone()).collect(),
        trigger_time: view.trigger_time,
        job: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutePolicy;
    use crate::history::tests::window;
    use crate::history::History;
    use llmopt_events::RouteTarget;
    use llmopt_routing::targets_from_param;

    fn policy() -> RoutePolicy {
        RoutePolicy {
            app: "app".into(),
            route: "chat".into(),
            fallback: Some(ModelRef {
                provider: "anthropic".into(),
                model: "claude".into(),
            }),
            ..RoutePolicy::default()
        }
    }

    fn run(errors: &[i64], weight: f64, cfg: &DecisionConfig) -> Option<Proposal> {
        let mut h = History::new(100);
        for (m, e) in errors.iter().enumerate() {
            h.insert(&window(
                "chat", "openai", "gpt", m as i64, 100, *e, 500.0, None,
            ));
        }
        let policy = policy();
        let view = RouteView {
            app: "app",
            route: "chat",
            history: h.route("app", "chat")?,
            targets: vec![
                RouteTarget {
                    provider: "openai".into(),
                    model: "gpt".into(),
                    weight,
                },
                RouteTarget {
                    provider: "other".into(),
                    model: "x".into(),
                    weight: 1.0 - weight,
                },
            ],
            version: Some(1),
            config: cfg,
            policy: Some(&policy),
            trigger_time: 42,
        };
        evaluate(&view, "openai", "gpt", &[])
    }

    #[test]
    fn breach_shifts_to_fallback_capped_by_max_shift() {
        let cfg = DecisionConfig::default();
        let p = run(&[1, 30, 40, 35], 1.0, &cfg).expect("failover");
        assert_eq!(p.action, ACTION_SHIFT_TRAFFIC);
        assert_eq!(p.params[PARAM_SHIFT], "0.5");
        let targets = targets_from_param(&p.params[PARAM_TARGETS]).unwrap();
        assert!((weight_of(&targets, "anthropic", "claude") - 0.5).abs() < 1e-9);
        assert!((weight_of(&targets, "openai", "gpt") - 0.5).abs() < 1e-9);
        assert_eq!(p.evidence.test, "binomial_exact");
        assert!(p.evidence.p_value.unwrap() < 1e-6);
        assert_eq!(p.caused_by.len(), 3);
        assert_eq!(p.trigger_time, 42);
    }

    #[test]
    fn small_weight_shifts_fully() {
        let cfg = DecisionConfig::default();
        let p = run(&[30, 40, 35], 0.3, &cfg).expect("failover");
        assert_eq!(p.params[PARAM_SHIFT], "0.3");
    }

    /// The route's fallback chain is claude, then gemini; `failing` windows show 40 % errors.
    fn chain_run(failing: &[(&str, &str)], avoid: &[ModelKey]) -> Option<Proposal> {
        let cfg = DecisionConfig::default();
        let mut policy = policy();
        policy.fallbacks = vec![ModelRef {
            provider: "google".into(),
            model: "gemini".into(),
        }];
        let mut h = History::new(100);
        let served = [
            ("openai", "gpt"),
            ("anthropic", "claude"),
            ("google", "gemini"),
        ];
        for m in 0..4 {
            for (p, model) in served {
                let errors = if failing.contains(&(p, model)) { 40 } else { 1 };
                h.insert(&window("chat", p, model, m, 100, errors, 500.0, None));
            }
        }
        let view = RouteView {
            app: "app",
            route: "chat",
            history: h.route("app", "chat")?,
            targets: served
                .iter()
                .map(|(p, m)| RouteTarget {
                    provider: (*p).into(),
                    model: (*m).into(),
                    weight: 1.0 / 3.0,
                })
                .collect(),
            version: Some(1),
            config: &cfg,
            policy: Some(&policy),
            trigger_time: 42,
        };
        let (provider, model) = failing.first()?;
        evaluate(&view, provider, model, avoid)
    }

    fn target(p: &Proposal) -> (&str, &str) {
        (
            p.params[PARAM_PROVIDER].as_str(),
            p.params[PARAM_MODEL].as_str(),
        )
    }

    #[test]
    fn the_first_healthy_entry_of_the_chain_takes_the_traffic() {
        let p = chain_run(&[("openai", "gpt")], &[]).expect("failover");
        assert_eq!(target(&p), ("anthropic", "claude"));
        // The first fallback itself fails: the next entry takes its traffic.
        let p = chain_run(&[("anthropic", "claude")], &[]).expect("failover");
        assert_eq!(target(&p), ("google", "gemini"));
        // The first fallback breaches as well: skipped.
        let p = chain_run(&[("openai", "gpt"), ("anthropic", "claude")], &[]).expect("failover");
        assert_eq!(target(&p), ("google", "gemini"));
        // A model the core says to avoid (an open circuit) is skipped.
        let avoid = [("anthropic".to_string(), "claude".to_string())];
        let p = chain_run(&[("openai", "gpt")], &avoid).expect("failover");
        assert_eq!(target(&p), ("google", "gemini"));
        // Nowhere healthy to go: no move at all rather than a move onto a failing model.
        assert!(chain_run(
            &[
                ("openai", "gpt"),
                ("anthropic", "claude"),
                ("google", "gemini")
            ],
            &[]
        )
        .is_none());
    }

    #[test]
    fn within_slo_no_failover() {
        let cfg = DecisionConfig::default();
        assert!(run(&[4, 6, 5], 1.0, &cfg).is_none());
        // Above the SLO but not significantly (7 % on 300 calls vs 5 %).
        assert!(run(&[7, 7, 7], 1.0, &cfg).is_none());
        // Too few windows.
        assert!(run(&[50, 50], 1.0, &cfg).is_none());
        // Not routed any more.
        assert!(run(&[50, 50, 50], 0.0, &cfg).is_none());
    }
}
