//! The optimisation strategies. Each is a pure function of a route's recent history, its routing
//! config and the configuration, returning a [`Proposal`] backed by a statistical test, or
//! nothing. Safety gating (cooldowns, open decisions, concurrency) is the core's job, so a
//! strategy can be tested on its statistics alone.

pub mod canary;
pub mod failover;
pub mod quantize;
pub mod rollback;
pub mod router;
pub mod tuning;

use std::collections::BTreeMap;

use llmopt_events::{Evidence, QuantizationJob, RouteTarget, Strategy};

use crate::config::{DecisionConfig, RoutePolicy};
use crate::history::RouteHistory;
use crate::stats::TestResult;

/// What a strategy wants done, before the core gives it an id and a lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Which strategy proposes it.
    pub strategy: Strategy,
    /// Application.
    pub app: String,
    /// Route.
    pub route: String,
    /// Action for the actuator (see `llmopt_routing::ACTION_*`).
    pub action: String,
    /// Action params (see `llmopt_routing::PARAM_*`).
    pub params: BTreeMap<String, String>,
    /// Human-readable why.
    pub reason: String,
    /// The test it rests on.
    pub evidence: Evidence,
    /// Ids of the events that triggered it.
    pub caused_by: Vec<String>,
    /// Event time of the triggering event: part of the decision id.
    pub trigger_time: i64,
    /// For quantization requests: the job to publish once approved (the core fills in
    /// `job_id` and `decision_id`).
    pub job: Option<QuantizationJob>,
}

/// What a strategy may look at for one route.
#[derive(Debug, Clone)]
pub struct RouteView<'a> {
    /// Application.
    pub app: &'a str,
    /// Route.
    pub route: &'a str,
    /// Recent windows of the route.
    pub history: &'a RouteHistory,
    /// Current targets (the routing config, or observed traffic shares when none is known).
    pub targets: Vec<RouteTarget>,
    /// Current routing config version, if one is known.
    pub version: Option<i64>,
    /// Core configuration.
    pub config: &'a DecisionConfig,
    /// The route's policy, if configured.
    pub policy: Option<&'a RoutePolicy>,
    /// Event time of the triggering event.
    pub trigger_time: i64,
}

/// Builds the evidence of a test, dropping non-finite statistics (JSON has no infinity).
pub fn evidence(
    test: &str,
    result: Option<TestResult>,
    metrics: BTreeMap<String, f64>,
) -> Evidence {
    Evidence {
        test: test.to_string(),
        statistic: result.and_then(|r| r.finite_statistic()),
        p_value: result.map(|r| r.p_value),
        metrics: metrics.into_iter().filter(|(_, v)| v.is_finite()).collect(),
    }
}

/// Formats a share or rate for params and reasons: compact, no trailing zeros.
pub fn fmt_num(x: f64) -> String {
    let rounded = (x * 1e9).round() / 1e9;
    format!("{rounded}")
}
