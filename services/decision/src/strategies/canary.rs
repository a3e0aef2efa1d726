//! Cheaper-model canary: when a route's configured cheaper candidate has served traffic and its
//! quality is shown non-inferior to the incumbents', start a canary at the first step.
//!
//! Non-inferiority is a one-sided Welch t-test of H0: q_candidate ≤ q_incumbent − margin against
//! H1: q_candidate > q_incumbent − margin over per-window quality means; the canary starts only
//! when H0 is rejected at `alpha` (absence of evidence of harm is not enough).

use std::collections::BTreeMap;

use llmopt_events::Strategy;
use llmopt_routing::{
    weight_of, ACTION_START_CANARY, PARAM_MODEL, PARAM_PROVIDER, PARAM_STEP, PARAM_WEIGHT,
};

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::stats::{mean, welch_t_greater};

/// Proposes a canary of the route's cheaper candidate at weight `first_weight`.
pub fn evaluate(view: &RouteView<'_>, first_weight: f64) -> Option<Proposal> {
    let cfg = view.config;
    let cand = view.policy?.cheaper.as_ref()?;
    if weight_of(&view.targets, &cand.provider, &cand.model) >= first_weight {
        return None;
    }
    let n = cfg.canary.comparison_windows;
    let cand_points: Vec<_> = view
        .history
        .last_points(&cand.provider, &cand.model, usize::MAX)
        .into_iter()
        .filter(|p| p.quality_count > 0)
        .collect();
    let cand_points = &cand_points[cand_points.len().saturating_sub(n)..];
    if cand_points.len() < cfg.canary.min_candidate_windows {
        return None;
    }
    let incumbents = view
        .history
        .quality_windows_excluding((&cand.provider, &cand.model), n);
    let cand_q: Vec<f64> = cand_points
        .iter()
        .filter_map(|p| p.quality_mean())
        .collect();
    let inc_q: Vec<f64> = incumbents.iter().filter_map(|w| w.quality_mean()).collect();
    let result = welch_t_greater(&inc_q, &cand_q, -cand.quality_margin)?;
    if !result.significant(cfg.alpha) {
        return None;
    }
    let (cm, im) = (mean(&cand_q)?, mean(&inc_q)?);
    let cost = |calls: i64, usd: f64| {
        if calls > 0 {
            usd / calls as f64
        } else {
            f64::NAN
        }
    };
    let cand_cost = cost(
        cand_points.iter().map(|p| p.count).sum(),
        cand_points.iter().map(|p| p.cost_usd).sum(),
    );
    let mut params = BTreeMap::new();
    params.insert(PARAM_PROVIDER.to_string(), cand.provider.clone());
    params.insert(PARAM_MODEL.to_string(), cand.model.clone());
    params.insert(PARAM_STEP.to_string(), "0".to_string());
    params.insert(PARAM_WEIGHT.to_string(), fmt_num(first_weight));
    let mut metrics = BTreeMap::new();
    metrics.insert("candidate_quality_mean".to_string(), cm);
    metrics.insert("incumbent_quality_mean".to_string(), im);
    metrics.insert("margin".to_string(), cand.quality_margin);
    metrics.insert("candidate_windows".to_string(), cand_q.len() as f64);
    metrics.insert("incumbent_windows".to_string(), inc_q.len() as f64);
    metrics.insert("candidate_cost_per_call_usd".to_string(), cand_cost);
    Some(Proposal {
        strategy: Strategy::CheaperModelCanary,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_START_CANARY.to_string(),
        params,
        reason: format!(
            "{}/{} quality {:.3} is non-inferior to incumbents' {:.3} (margin {}, p={:.3e}); \
             canary at {}",
            cand.provider,
            cand.model,
            cm,
            im,
            fmt_num(cand.quality_margin),
            result.p_value,
            fmt_num(first_weight),
        ),
        evidence: evidence("welch_t_noninferiority", Some(result), metrics),
        caused_by: cand_points.iter().map(|p| p.event_id.clone()).collect(),
        trigger_time: view.trigger_time,
        job: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CheaperCandidate, DecisionConfig, RoutePolicy};
    use crate::history::tests::window;
    use crate::history::History;
    use llmopt_events::RouteTarget;

    fn run(cand_quality: f64, cand_windows: i64, cand_weight: f64) -> Option<Proposal> {
        let cfg = DecisionConfig::default();
        let policy = RoutePolicy {
            app: "app".into(),
            route: "chat".into(),
            cheaper: Some(CheaperCandidate {
                provider: "openai".into(),
                model: "mini".into(),
                quality_margin: 0.05,
            }),
            ..RoutePolicy::default()
        };
        let jitter = [0.0, 0.01, -0.01, 0.005, -0.005, 0.0, 0.01];
        let mut h = History::new(100);
        for m in 0..7 {
            let j = jitter[m as usize];
            h.insert(&window(
                "chat",
                "openai",
                "gpt",
                m,
                1000,
                5,
                500.0,
                Some(0.80 + j),
            ));
            if m >= 7 - cand_windows {
                h.insert(&window(
                    "chat",
                    "openai",
                    "mini",
                    m,
                    50,
                    0,
                    300.0,
                    Some(cand_quality - j),
                ));
            }
        }
        let view = RouteView {
            app: "app",
            route: "chat",
            history: h.route("app", "chat")?,
            targets: vec![
                RouteTarget {
                    provider: "openai".into(),
                    model: "gpt".into(),
                    weight: 1.0 - cand_weight,
                },
                RouteTarget {
                    provider: "openai".into(),
                    model: "mini".into(),
                    weight: cand_weight,
                },
            ],
            version: Some(1),
            config: &cfg,
            policy: Some(&policy),
            trigger_time: 7 * 60_000,
        };
        evaluate(&view, 0.05)
    }

    #[test]
    fn non_inferior_candidate_starts_canary() {
        let p = run(0.79, 6, 0.0).expect("canary");
        assert_eq!(p.action, ACTION_START_CANARY);
        assert_eq!(p.params[PARAM_STEP], "0");
        assert_eq!(p.params[PARAM_WEIGHT], "0.05");
        assert_eq!(p.params[PARAM_MODEL], "mini");
        assert_eq!(p.evidence.test, "welch_t_noninferiority");
        assert!(p.evidence.p_value.unwrap() < 0.01);
    }

    #[test]
    fn worse_candidate_no_canary() {
        assert!(run(0.70, 6, 0.0).is_none());
    }

    #[test]
    fn too_little_candidate_traffic_no_canary() {
        assert!(run(0.80, 2, 0.0).is_none());
    }

    #[test]
    fn already_at_canary_weight_no_canary() {
        assert!(run(0.80, 6, 0.05).is_none());
    }
}
