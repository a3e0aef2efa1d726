//! Failover: a provider/model whose error rate over its last windows is significantly above its
//! SLO loses traffic to the route's configured fallback, at most `max_traffic_shift` per
//! decision (a further decision, after the cooldown, moves the rest if it still fails).

use std::collections::BTreeMap;

use llmopt_actuator::{
    shift_traffic, targets_to_param, weight_of, ACTION_SHIFT_TRAFFIC, PARAM_FROM_MODEL,
    PARAM_FROM_PROVIDER, PARAM_MODEL, PARAM_PROVIDER, PARAM_SHIFT, PARAM_TARGETS,
};
use llmopt_events::Strategy;

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::stats::binomial_greater;

/// Proposes a traffic shift away from `provider`/`model` if it breaches its error-rate SLO.
pub fn evaluate(view: &RouteView<'_>, provider: &str, model: &str) -> Option<Proposal> {
    let cfg = view.config;
    let fallback = view.policy?.fallback.as_ref()?;
    if fallback.provider == provider && fallback.model == model {
        return None;
    }
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
    let errors: i64 = points.iter().map(|p| p.error_count).sum();
    let calls: i64 = points.iter().map(|p| p.count).sum();
    if calls < cfg.failover_min_calls {
        return None;
    }
    let slo = cfg.error_slo.for_model(provider, model);
    let rate = errors as f64 / calls as f64;
    let result = binomial_greater(errors, calls, slo)?;
    if rate <= slo || !result.significant(cfg.alpha) {
        return None;
    }
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
    metrics.insert("error_rate".to_string(), rate);
    metrics.insert("slo".to_string(), slo);
    metrics.insert("errors".to_string(), errors as f64);
    metrics.insert("calls".to_string(), calls as f64);
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
            rate * 100.0,
            points.len(),
            slo * 100.0,
            result.p_value,
            fmt_num(shift),
            fallback.provider,
            fallback.model,
        ),
        evidence: evidence("binomial_exact", Some(result), metrics),
        caused_by: points.iter().map(|p| p.event_id.clone()).collect(),
        trigger_time: view.trigger_time,
        job: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecisionConfig, ModelRef, RoutePolicy};
    use crate::history::tests::window;
    use crate::history::History;
    use llmopt_actuator::targets_from_param;
    use llmopt_events::RouteTarget;

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
        evaluate(&view, "openai", "gpt")
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
