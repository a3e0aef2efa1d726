//! The demo's operating policy, derived from the simulated fleet the way an operator would write
//! it: each route's fallback, its cheaper candidate, the cost targets of self-hosted models, and
//! an SLO on the support bot's answer quality.

use llmopt_decision::config::{
    AllowedModel, CheaperCandidate, ModelRef, RoutePolicy, SelfHostedModel,
};
use llmopt_detector::{Comparison, Matchers, Metric, SloRule};
use llmopt_events::Severity;
use llmopt_sim::FleetSpec;

use crate::config::AppConfig;

/// Share of a route below which a model is a candidate being evaluated, not an incumbent.
const CANDIDATE_SHARE: f64 = 0.25;
/// Cost target of a self-hosted model, as a multiple of its expected cost per call.
const COST_TARGET_FACTOR: f64 = 1.6;

/// `config` with the decision policies and SLO rules of the demo fleet added. What `config`
/// already holds wins: a route policy for the same app and route, or a rule of the same name
/// (so a file written by `llmopt loadgen --print-config`, edited or not, can be given back).
pub fn for_fleet(mut config: AppConfig, fleet: &FleetSpec) -> AppConfig {
    for (app, route) in fleet.routes() {
        let configured = config
            .decision
            .routes
            .iter()
            .any(|p| p.app == app.name && p.route == route.name);
        if configured {
            continue;
        }
        let mut policy = RoutePolicy {
            app: app.name.clone(),
            route: route.name.clone(),
            ..RoutePolicy::default()
        };
        // `fallback` is a chain: `provider/model[,provider/model...]`, first entry first.
        let mut chain = route
            .params
            .get("fallback")
            .into_iter()
            .flat_map(|f| f.split(','))
            .filter_map(|f| {
                let (provider, model) = f.trim().split_once('/')?;
                Some(ModelRef {
                    provider: provider.into(),
                    model: model.into(),
                })
            });
        policy.fallback = chain.next();
        policy.fallbacks = chain.collect();
        let incumbent_price = route
            .targets
            .iter()
            .filter(|t| t.weight > CANDIDATE_SHARE)
            .filter_map(|t| fleet.catalogue.get(&t.provider, &t.model))
            .map(|m| m.blended_usd_per_1m())
            .fold(0.0, f64::max);
        policy.cheaper = route
            .targets
            .iter()
            .filter(|t| t.weight <= CANDIDATE_SHARE)
            .filter_map(|t| fleet.catalogue.get(&t.provider, &t.model))
            .find(|m| m.blended_usd_per_1m() < incumbent_price)
            .map(|m| CheaperCandidate {
                provider: m.provider.clone(),
                model: m.model.clone(),
                quality_margin: 0.05,
            });
        for target in &route.targets {
            let Some(profile) = fleet.catalogue.get(&target.provider, &target.model) else {
                continue;
            };
            if !profile.self_hosted {
                continue;
            }
            let mean = |median: f64, sigma: f64| median * (sigma * sigma / 2.0).exp();
            let expected = profile.per_call_usd
                + (mean(route.tokens.input.median, route.tokens.input.sigma)
                    * profile.input_usd_per_1m
                    + mean(route.tokens.output.median, route.tokens.output.sigma)
                        * profile.output_usd_per_1m)
                    / 1e6;
            policy.self_hosted.push(SelfHostedModel {
                provider: target.provider.clone(),
                model: target.model.clone(),
                model_location: format!("/models/{}", target.model),
                max_cost_per_call_usd: Some(expected * COST_TARGET_FACTOR),
                max_latency_p95_ms: None,
            });
        }
        config.decision.routes.push(policy);
    }
    // Long answers of the large models take tens of seconds: a p95 above 30 s is the fleet's
    // latency SLO, not the detector's generic 10 s default.
    for rule in &mut config.detector.rules {
        if rule.metric == Metric::LatencyP95Ms {
            rule.threshold = 30_000.0;
        }
    }
    // The cheaper candidate gets a few percent of a route's traffic, so its quality estimate
    // needs half an hour of windows to be conclusive.
    config.decision.canary.comparison_windows = 30;
    // Per-window p95 latencies of long answers are noisy; ten windows on each side of a change
    // give the before/after test the power to see a doubling.
    config.decision.baseline_windows = 10;
    config.decision.evaluation_windows = 5;
    config.decision.canary.min_candidate_windows = 10;
    let support_quality = SloRule {
        name: "SupportQualityLow".into(),
        metric: Metric::QualityMean,
        comparison: Comparison::Lt,
        threshold: 0.80,
        for_windows: 3,
        severity: Severity::Warning,
        matchers: Matchers {
            app: Some("support-bot".into()),
            ..Matchers::default()
        },
        summary: None,
        // Quality scores are a sample of the calls: a night window of the support bot holds
        // a handful of scored calls, and three such windows below 0.80 by chance raised most
        // of the benchmark's false alerts (seed 1: 10 of 18 in 50 fleet-days).
        min_calls: Some(20),
        confidence: None,
    };
    if !config
        .detector
        .rules
        .iter()
        .any(|r| r.name == support_quality.name)
    {
        config.detector.rules.push(support_quality);
    }
    config
}

/// `config` with the demo policy of [`for_fleet`], and every route of `fleet` optimised by the
/// router: its allowed models are the route's choices (initial targets and the models whose
/// quality on the route is known), its quality floor `share_of_best` of the most capable
/// choice's quality, as an operator who evaluated the models on the route's task would set it;
/// with `tune`, its `max_tokens` and three quarters of it are the tuner's arms.
pub fn with_router(
    config: AppConfig,
    fleet: &FleetSpec,
    share_of_best: f64,
    tune: bool,
) -> AppConfig {
    let mut config = for_fleet(config, fleet);
    for (app, route) in fleet.routes() {
        let Some(policy) = config
            .decision
            .routes
            .iter_mut()
            .find(|p| p.app == app.name && p.route == route.name)
        else {
            continue;
        };
        if !policy.models.is_empty() {
            continue;
        }
        policy.models = route
            .choices()
            .into_iter()
            .map(|(provider, model)| AllowedModel {
                provider,
                model,
                max_share: 1.0,
            })
            .collect();
        // The tuner tries the route's max_tokens and three quarters of it.
        if tune && policy.parameter_arms.is_empty() {
            if let Some(max) = route
                .params
                .get("max_tokens")
                .and_then(|m| m.parse::<i64>().ok())
            {
                let arm = |m: i64| [("max_tokens".to_string(), m.to_string())].into();
                policy.parameter_arms = vec![arm(max), arm((max * 3 / 4).max(1))];
            }
        }
        policy.quality_floor = policy.quality_floor.or_else(|| {
            let (p, m) = route.most_capable(&fleet.catalogue)?;
            Some(route.quality_of(&fleet.catalogue, &p, &m)? * share_of_best)
        });
    }
    config
}
