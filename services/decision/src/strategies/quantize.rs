//! Quantization request: a self-hosted model whose cost per call or latency p95 is
//! significantly above its target over its last windows gets a GPTQ 4-bit build requested.
//!
//! A one-sample t-test over per-window values guards against one noisy window triggering an
//! expensive job; the core requests each model at most once.

use std::collections::BTreeMap;

use llmopt_events::{QuantMethod, QuantizationJob, Strategy};
use llmopt_routing::{ACTION_QUANTIZE, PARAM_MODEL, PARAM_PROVIDER};

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::config::SelfHostedModel;
use crate::stats::{mean, one_sample_t_greater, TestResult};

/// Bits of the requested quantization.
pub const QUANT_BITS: i32 = 4;
/// Group size of the requested quantization.
pub const QUANT_GROUP_SIZE: i32 = 128;

/// Proposes quantizing `target` if its cost per call or latency p95 breaches its target.
pub fn evaluate(view: &RouteView<'_>, target: &SelfHostedModel) -> Option<Proposal> {
    let cfg = view.config;
    let points = view
        .history
        .last_points(&target.provider, &target.model, cfg.quantize_windows);
    if points.len() < cfg.quantize_windows {
        return None;
    }
    let costs: Vec<f64> = points.iter().filter_map(|p| p.cost_per_call()).collect();
    let latencies: Vec<f64> = points
        .iter()
        .filter(|p| p.count > 0)
        .map(|p| p.latency_p95_ms)
        .collect();
    let check = |values: &[f64], limit: Option<f64>| -> Option<(f64, f64, TestResult)> {
        let limit = limit?;
        let m = mean(values)?;
        let r = one_sample_t_greater(values, limit)?;
        (m > limit && r.significant(cfg.alpha)).then_some((m, limit, r))
    };
    let cost = check(&costs, target.max_cost_per_call_usd);
    let latency = check(&latencies, target.max_latency_p95_ms);
    let (metric, (value, limit, result)) = match (cost, latency) {
        (Some(c), _) => ("cost_per_call_usd", c),
        (None, Some(l)) => ("latency_p95_ms", l),
        (None, None) => return None,
    };
    let mut metrics = BTreeMap::new();
    if let Some(m) = mean(&costs) {
        metrics.insert("cost_per_call_usd".to_string(), m);
    }
    if let Some(m) = mean(&latencies) {
        metrics.insert("latency_p95_ms".to_string(), m);
    }
    if let Some(t) = target.max_cost_per_call_usd {
        metrics.insert("max_cost_per_call_usd".to_string(), t);
    }
    if let Some(t) = target.max_latency_p95_ms {
        metrics.insert("max_latency_p95_ms".to_string(), t);
    }
    metrics.insert("windows".to_string(), points.len() as f64);
    let mut params = BTreeMap::new();
    params.insert(PARAM_PROVIDER.to_string(), target.provider.clone());
    params.insert(PARAM_MODEL.to_string(), target.model.clone());
    params.insert("model_location".to_string(), target.model_location.clone());
    params.insert("method".to_string(), "GPTQ".to_string());
    params.insert("bits".to_string(), QUANT_BITS.to_string());
    params.insert("group_size".to_string(), QUANT_GROUP_SIZE.to_string());
    Some(Proposal {
        strategy: Strategy::QuantizationRequest,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_QUANTIZE.to_string(),
        params,
        reason: format!(
            "{}/{} {metric} {} exceeds target {} over {} windows (p={:.3e}); requesting GPTQ \
             {QUANT_BITS}-bit g{QUANT_GROUP_SIZE}",
            target.provider,
            target.model,
            fmt_num(value),
            fmt_num(limit),
            points.len(),
            result.p_value,
        ),
        evidence: evidence("one_sample_t", Some(result), metrics),
        caused_by: points.iter().map(|p| p.event_id.clone()).collect(),
        trigger_time: view.trigger_time,
        job: Some(QuantizationJob {
            job_id: String::new(),
            event_time: view.trigger_time,
            model_name: target.model.clone(),
            model_location: target.model_location.clone(),
            method: QuantMethod::Gptq,
            bits: QUANT_BITS,
            group_size: Some(QUANT_GROUP_SIZE),
            symmetric: true,
            act_order: false,
            calibration_set: None,
            decision_id: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DecisionConfig;
    use crate::history::tests::window;
    use crate::history::History;

    fn run(p95: f64, cost_per_call: f64, target: &SelfHostedModel) -> Option<Proposal> {
        let cfg = DecisionConfig::default();
        let mut h = History::new(100);
        for m in 0..5 {
            let mut w = window("chat", "vllm", "llama", m, 100, 0, p95 + m as f64, None);
            w.cost_usd = 100.0 * (cost_per_call + m as f64 * 1e-6);
            h.insert(&w);
        }
        let view = RouteView {
            app: "app",
            route: "chat",
            history: h.route("app", "chat")?,
            targets: vec![],
            version: None,
            config: &cfg,
            policy: None,
            trigger_time: 300_000,
        };
        evaluate(&view, target)
    }

    fn target() -> SelfHostedModel {
        SelfHostedModel {
            provider: "vllm".into(),
            model: "llama".into(),
            model_location: "s3://models/llama".into(),
            max_cost_per_call_usd: Some(0.002),
            max_latency_p95_ms: Some(800.0),
        }
    }

    #[test]
    fn over_cost_requests_gptq() {
        let p = run(500.0, 0.003, &target()).expect("quantize");
        assert_eq!(p.action, ACTION_QUANTIZE);
        assert_eq!(p.strategy, Strategy::QuantizationRequest);
        let job = p.job.expect("job");
        assert_eq!(job.method, QuantMethod::Gptq);
        assert_eq!(job.bits, 4);
        assert_eq!(job.group_size, Some(128));
        assert_eq!(job.model_location, "s3://models/llama");
        assert!(p.reason.contains("cost_per_call_usd"));
    }

    #[test]
    fn over_latency_requests_gptq() {
        let p = run(1200.0, 0.001, &target()).expect("quantize");
        assert!(p.reason.contains("latency_p95_ms"));
    }

    #[test]
    fn within_targets_no_request() {
        assert!(run(500.0, 0.001, &target()).is_none());
        let no_targets = SelfHostedModel {
            max_cost_per_call_usd: None,
            max_latency_p95_ms: None,
            ..target()
        };
        assert!(run(5000.0, 1.0, &no_targets).is_none());
    }
}
