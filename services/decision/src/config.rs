//! Configuration of the decision core: which optimisations exist per route and the statistical
//! and safety thresholds they must pass.
//!
//! Every field has a default so an empty file gives a working (if idle: no route policies) core,
//! and the defaults are conservative: significance 1 %, one change in flight per route, at most
//! half the traffic moved per step.

use llmopt_events::DecisionMode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Whether decisions are applied automatically or wait for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decisions are emitted APPROVED and applied at once.
    Auto,
    /// Decisions are emitted PROPOSED and wait for `llmopt decisions approve`.
    #[default]
    Propose,
}

impl Mode {
    /// The contract's mode value for decisions made in this mode.
    pub fn as_event_mode(self) -> DecisionMode {
        match self {
            Mode::Auto => DecisionMode::Auto,
            Mode::Propose => DecisionMode::Propose,
        }
    }
}

/// A provider/model pair, the unit traffic is routed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelRef {
    /// Provider (`gen_ai.system`).
    pub provider: String,
    /// Model name.
    pub model: String,
}

/// A cheaper model that may take over a route if its quality is not worse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheaperCandidate {
    /// Provider of the candidate.
    pub provider: String,
    /// Model of the candidate.
    pub model: String,
    /// Non-inferiority margin on the quality mean: the candidate may be at most this much
    /// worse (absolute, in quality score units) than the incumbents.
    #[serde(default = "default_quality_margin")]
    pub quality_margin: f64,
}

fn default_quality_margin() -> f64 {
    0.05
}

/// A self-hosted model with cost and latency targets; exceeding them requests a quantized build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfHostedModel {
    /// Provider name under which its calls are reported.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Where the quantizer finds the weights (path or URI).
    pub model_location: String,
    /// Target cost per call in USD.
    #[serde(default)]
    pub max_cost_per_call_usd: Option<f64>,
    /// Target latency p95 in ms.
    #[serde(default)]
    pub max_latency_p95_ms: Option<f64>,
}

/// What the core may do on one app/route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutePolicy {
    /// Application name.
    pub app: String,
    /// Route within the application.
    pub route: String,
    /// Where traffic goes when a provider/model breaches its error-rate SLO (the first entry
    /// of the fallback chain; kept so that older config files work unchanged).
    pub fallback: Option<ModelRef>,
    /// Further fallbacks, in order: when a fallback breaches too, the next healthy entry takes
    /// its traffic (LiteLLM's `fallbacks` list).
    pub fallbacks: Vec<ModelRef>,
    /// Cheaper model to canary.
    pub cheaper: Option<CheaperCandidate>,
    /// Self-hosted models of this route with cost/latency targets.
    pub self_hosted: Vec<SelfHostedModel>,
    /// Models the router may send this route's traffic to (besides its current targets): the
    /// route's allowed set. Empty: the router leaves the route alone, and `cheaper` (the
    /// two-model special case) is canaried as before. With models, the router optimises the
    /// route and `cheaper` is one more allowed model.
    pub models: Vec<AllowedModel>,
    /// Lowest acceptable mean quality score of the route's traffic. Unset: the incumbents'
    /// mean less the `cheaper` margin when `cheaper` is set, otherwise no floor.
    pub quality_floor: Option<f64>,
    /// Latency SLO: p95 in ms no model may exceed to get traffic.
    pub latency_slo_p95_ms: Option<f64>,
    /// Highest acceptable cost per call (USD) for the `max_quality` objective.
    pub max_cost_per_call_usd: Option<f64>,
    /// What the router optimises within the constraints.
    pub objective: Objective,
    /// Parameter sets the tuner may try on this route (e.g. `[{ max_tokens = "1024" },
    /// { max_tokens = "768" }]`); the live params must be one of them. Empty: no tuning.
    pub parameter_arms: Vec<std::collections::BTreeMap<String, String>>,
}

/// A model a route may be routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowedModel {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Most of the route's traffic this model may get (1: no cap).
    #[serde(default = "one")]
    pub max_share: f64,
}

fn one() -> f64 {
    1.0
}

/// What the router optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// The cheapest model whose quality, error rate and latency meet the route's constraints
    /// (RouteLLM's cost/quality trade-off).
    #[default]
    MinCost,
    /// The best model within the latency SLO and the cost ceiling.
    MaxQuality,
}

impl RoutePolicy {
    /// The fallback chain: `fallback`, then `fallbacks`, each model once, in order.
    pub fn fallback_chain(&self) -> Vec<&ModelRef> {
        let mut chain: Vec<&ModelRef> = Vec::new();
        for m in self.fallback.iter().chain(&self.fallbacks) {
            if !chain.contains(&m) {
                chain.push(m);
            }
        }
        chain
    }
}

/// Fail-back: a provider/model a failover took traffic from is a circuit breaker's open
/// circuit. After `probe_after_ms` it gets a probe share of the route back (half-open); once
/// the probe has held for `probe_windows` the rest returns in steps of
/// `limits.max_traffic_shift`, each judged over `step_windows` (Flagger's analysis interval);
/// a probe or step whose window shows the model still failing is rolled back at once and the
/// circuit stays open for another `probe_after_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailbackConfig {
    /// Whether traffic returns to a model once it recovers.
    pub enabled: bool,
    /// Event time from the failover (or a failed probe) to the next probe (ms).
    pub probe_after_ms: i64,
    /// Share of the route's traffic a probe sends back.
    pub probe_share: f64,
    /// Windows a probe is judged over before it holds. Any window whose traffic on the probed
    /// model is significantly worse than the holder's ends it at once (the circuit stays open).
    pub probe_windows: usize,
    /// Windows each return step after a held probe is judged over, as a canary analysis
    /// interval: the primary has already shown it recovered.
    pub step_windows: usize,
}

impl Default for FailbackConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            probe_after_ms: 120_000,
            probe_share: 0.1,
            probe_windows: 2,
            step_windows: 1,
        }
    }
}

/// The constrained Thompson sampling router: per route, posteriors of each allowed model's
/// quality (Normal, from feedback scores), error rate (Beta) and its observed cost and latency;
/// traffic is matched to each model's posterior probability of being the best feasible choice,
/// one verified step at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Whether routes with allowed models are optimised.
    pub enabled: bool,
    /// Most recent windows per model the posteriors are built from.
    pub windows: usize,
    /// Posterior draws per evaluation.
    pub draws: usize,
    /// Scored calls a model needs before its quality counts as known; until then it only gets
    /// an exploration share.
    pub min_scored_calls: i64,
    /// Share an unknown model gets while it is explored (only on routes with feedback scores).
    pub explore_share: f64,
    /// Smallest share a step moves: smaller differences are noise, not worth a change.
    pub min_step: f64,
    /// Router decisions open at once over all routes.
    pub max_concurrent: usize,
    /// Most recent windows of a serving model the quality guard tests against the floor.
    pub guard_windows: usize,
    /// After the guard took a model's traffic away, its earlier windows are forgotten and it
    /// is explored again only after this long (event time, ms).
    pub reexplore_after_ms: i64,
    /// Safety margin above the quality floor: a drawn quality must clear `floor + margin`
    /// to count as feasible.
    pub floor_margin: f64,
    /// Seed mixed into every evaluation's draws (with the route and the window time).
    pub seed: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            windows: 60,
            draws: 400,
            min_scored_calls: 30,
            explore_share: 0.05,
            min_step: 0.05,
            max_concurrent: 2,
            guard_windows: 3,
            reexplore_after_ms: 1_800_000,
            floor_margin: 0.005,
            seed: 0,
        }
    }
}

/// The parameter tuner: a bandit over each route's `parameter_arms`, guarded by its quality
/// floor (see `strategies::tuning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TuningConfig {
    /// Whether routes with parameter arms are tuned.
    pub enabled: bool,
    /// Scored calls per serving model that make an arm measured.
    pub min_scored_calls: i64,
    /// How far below the best arm's quality a cheaper arm may be.
    pub quality_margin: f64,
    /// Share of posterior draws an arm must win before the tuner switches to it.
    pub switch_probability: f64,
    /// Posterior draws.
    pub draws: usize,
    /// Windows without a change of the route's models before the tuner tries an arm: a trial
    /// measures an arm on the models the router settled on, not on models about to leave.
    pub settle_windows: u32,
    /// How long an arm whose trial was abandoned (its route fell under the floor) waits before
    /// it is tried again; doubled after every further abandoned trial.
    pub retry_after_ms: i64,
}

impl Default for TuningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_scored_calls: 100,
            quality_margin: 0.01,
            switch_probability: 0.8,
            draws: 400,
            settle_windows: 15,
            retry_after_ms: 1_800_000,
        }
    }
}

/// An error-rate SLO override for one provider/model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSloOverride {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Maximum acceptable error rate.
    pub max_error_rate: f64,
}

/// Error-rate SLOs: the failover trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorSloConfig {
    /// SLO for any provider/model without an override.
    pub default_max_error_rate: f64,
    /// Per provider/model SLOs.
    pub overrides: Vec<ErrorSloOverride>,
}

impl Default for ErrorSloConfig {
    fn default() -> Self {
        Self {
            default_max_error_rate: 0.05,
            overrides: Vec::new(),
        }
    }
}

impl ErrorSloConfig {
    /// The SLO that applies to `provider`/`model`.
    pub fn for_model(&self, provider: &str, model: &str) -> f64 {
        self.overrides
            .iter()
            .find(|o| o.provider == provider && o.model == model)
            .map_or(self.default_max_error_rate, |o| o.max_error_rate)
    }
}

/// Thresholds of the before/after comparison (regression rollback and verification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegressionConfig {
    /// A significant change only counts if the metric is at least this much worse, relatively
    /// (0.2: 20 % more errors or latency, 20 % less quality).
    pub min_relative_change: f64,
    /// And, for the error rate, at least this much worse in absolute terms, so that 0.1 % → 0.13 %
    /// on a huge route does not trigger a rollback.
    pub min_error_rate_increase: f64,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        Self {
            min_relative_change: 0.2,
            min_error_rate_increase: 0.01,
        }
    }
}

/// Canary progression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryConfig {
    /// Candidate weight at each step; the last must be 1.
    pub steps: Vec<f64>,
    /// Windows to observe after each step before verifying it.
    pub windows_per_step: usize,
    /// Windows with quality data the candidate needs before a canary is considered.
    pub min_candidate_windows: usize,
    /// Most recent windows of candidate and incumbents compared for non-inferiority.
    pub comparison_windows: usize,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            steps: vec![0.05, 0.25, 0.5, 1.0],
            windows_per_step: 3,
            min_candidate_windows: 3,
            comparison_windows: 5,
        }
    }
}

/// Limits that bound what automation can do to a route, whatever the statistics say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SafetyLimits {
    /// Largest share of a route's traffic one change may move.
    pub max_traffic_shift: f64,
    /// After any change to a route, no new decision on it for this long (event time, ms).
    /// Rollbacks are exempt: undoing harm must not wait.
    pub cooldown_ms: i64,
    /// Canaries open at once, over all routes.
    pub max_concurrent_canaries: usize,
}

impl Default for SafetyLimits {
    fn default() -> Self {
        Self {
            max_traffic_shift: 0.5,
            cooldown_ms: 600_000,
            max_concurrent_canaries: 1,
        }
    }
}

/// Configuration of the decision core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionConfig {
    /// Auto-apply or propose.
    pub mode: Mode,
    /// Per-route policies; routes without one only get regression rollbacks.
    pub routes: Vec<RoutePolicy>,
    /// Error-rate SLOs.
    pub error_slo: ErrorSloConfig,
    /// Significance level of every test.
    pub alpha: f64,
    /// Closed windows before a change used as its baseline.
    pub baseline_windows: usize,
    /// Closed windows after a change compared with the baseline (regression and verification).
    pub evaluation_windows: usize,
    /// Most recent windows of a provider/model tested against its SLO.
    pub failover_windows: usize,
    /// Fewest calls over those windows before the SLO test runs (too few calls prove nothing).
    pub failover_min_calls: i64,
    /// Most recent windows of a self-hosted model compared with its targets.
    pub quantize_windows: usize,
    /// Before/after thresholds.
    pub regression: RegressionConfig,
    /// Canary steps.
    pub canary: CanaryConfig,
    /// Safety limits.
    pub limits: SafetyLimits,
    /// Returning traffic to models that recovered.
    pub failback: FailbackConfig,
    /// The constrained Thompson sampling router of routes with allowed models.
    pub router: RouterConfig,
    /// The parameter tuner of routes with parameter arms.
    pub tuning: TuningConfig,
    /// A PROPOSED decision not approved within this long (event time, ms) expires.
    pub proposal_ttl_ms: i64,
    /// Tumbling windows kept per route, bounding memory.
    pub history_windows: usize,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            routes: Vec::new(),
            error_slo: ErrorSloConfig::default(),
            alpha: 0.01,
            baseline_windows: 5,
            evaluation_windows: 3,
            failover_windows: 3,
            failover_min_calls: 30,
            quantize_windows: 5,
            regression: RegressionConfig::default(),
            canary: CanaryConfig::default(),
            limits: SafetyLimits::default(),
            failback: FailbackConfig::default(),
            router: RouterConfig::default(),
            tuning: TuningConfig::default(),
            proposal_ttl_ms: 3_600_000,
            history_windows: 240,
        }
    }
}

/// Why a configuration is unusable.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    /// A value is out of its range.
    #[error("`{field}` = {value}: {why}")]
    OutOfRange {
        /// The field, as spelled in the configuration file.
        field: &'static str,
        /// Its value.
        value: String,
        /// The accepted range.
        why: &'static str,
    },
}

fn check(
    ok: bool,
    field: &'static str,
    value: impl ToString,
    why: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value: value.to_string(),
            why,
        })
    }
}

impl DecisionConfig {
    /// Rejects configurations the core cannot act on safely (a significance level of 0 or 1,
    /// canary steps that go down, windows counts of zero).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.alpha > 0.0 && self.alpha < 1.0,
            "alpha",
            self.alpha,
            "must be in (0, 1)",
        )?;
        check(
            self.baseline_windows >= 2,
            "baseline_windows",
            self.baseline_windows,
            "must be >= 2",
        )?;
        check(
            self.evaluation_windows >= 2,
            "evaluation_windows",
            self.evaluation_windows,
            "must be >= 2",
        )?;
        check(
            self.failover_windows >= 1,
            "failover_windows",
            self.failover_windows,
            "must be >= 1",
        )?;
        check(
            self.quantize_windows >= 2,
            "quantize_windows",
            self.quantize_windows,
            "must be >= 2",
        )?;
        check(
            self.history_windows > self.baseline_windows + self.evaluation_windows,
            "history_windows",
            self.history_windows,
            "must hold baseline + evaluation windows",
        )?;
        let l = &self.limits;
        check(
            l.max_traffic_shift > 0.0 && l.max_traffic_shift <= 1.0,
            "limits.max_traffic_shift",
            l.max_traffic_shift,
            "must be in (0, 1]",
        )?;
        check(
            l.cooldown_ms >= 0,
            "limits.cooldown_ms",
            l.cooldown_ms,
            "must be >= 0",
        )?;
        check(
            self.proposal_ttl_ms > 0,
            "proposal_ttl_ms",
            self.proposal_ttl_ms,
            "must be > 0",
        )?;
        let f = &self.failback;
        check(
            f.probe_after_ms >= 0,
            "failback.probe_after_ms",
            f.probe_after_ms,
            "must be >= 0",
        )?;
        check(
            f.probe_share > 0.0 && f.probe_share <= 1.0,
            "failback.probe_share",
            f.probe_share,
            "must be in (0, 1]",
        )?;
        let c = &self.canary;
        let steps_ok = !c.steps.is_empty()
            && c.steps.windows(2).all(|w| w[0] < w[1])
            && c.steps.iter().all(|s| *s > 0.0 && *s <= 1.0)
            && c.steps.last() == Some(&1.0);
        check(
            steps_ok,
            "canary.steps",
            format!("{:?}", c.steps),
            "must increase within (0, 1] and end at 1",
        )?;
        check(
            c.windows_per_step >= 2,
            "canary.windows_per_step",
            c.windows_per_step,
            "must be >= 2",
        )?;
        check(
            c.min_candidate_windows >= 2,
            "canary.min_candidate_windows",
            c.min_candidate_windows,
            "must be >= 2",
        )?;
        check(
            c.comparison_windows >= c.min_candidate_windows,
            "canary.comparison_windows",
            c.comparison_windows,
            "must be >= canary.min_candidate_windows",
        )?;
        let r = &self.router;
        check(r.windows >= 2, "router.windows", r.windows, "must be >= 2")?;
        check(r.draws >= 10, "router.draws", r.draws, "must be >= 10")?;
        check(
            r.explore_share >= 0.0 && r.explore_share <= 0.5,
            "router.explore_share",
            r.explore_share,
            "must be in [0, 0.5]",
        )?;
        check(
            r.min_step > 0.0 && r.min_step <= 1.0,
            "router.min_step",
            r.min_step,
            "must be in (0, 1]",
        )?;
        check(
            r.guard_windows >= 1,
            "router.guard_windows",
            r.guard_windows,
            "must be >= 1",
        )?;
        let t = &self.tuning;
        check(
            t.min_scored_calls >= 1,
            "tuning.min_scored_calls",
            t.min_scored_calls,
            "must be >= 1",
        )?;
        check(
            t.switch_probability > 0.5 && t.switch_probability <= 1.0,
            "tuning.switch_probability",
            t.switch_probability,
            "must be in (0.5, 1]",
        )?;
        check(t.draws >= 10, "tuning.draws", t.draws, "must be >= 10")?;
        let f = &self.failback;
        check(
            f.probe_windows >= 1,
            "failback.probe_windows",
            f.probe_windows,
            "must be >= 1",
        )?;
        check(
            f.step_windows >= 1,
            "failback.step_windows",
            f.step_windows,
            "must be >= 1",
        )?;
        check(
            t.retry_after_ms >= 0,
            "tuning.retry_after_ms",
            t.retry_after_ms,
            "must be >= 0",
        )?;
        for p in &self.routes {
            if let Some(floor) = p.quality_floor {
                check(
                    (0.0..=1.0).contains(&floor),
                    "routes.quality_floor",
                    floor,
                    "must be in [0, 1]",
                )?;
            }
            for m in &p.models {
                check(
                    m.max_share > 0.0 && m.max_share <= 1.0,
                    "routes.models.max_share",
                    m.max_share,
                    "must be in (0, 1]",
                )?;
            }
        }
        Ok(())
    }

    /// The policy of an app/route, if one is configured.
    pub fn policy(&self, app: &str, route: &str) -> Option<&RoutePolicy> {
        self.routes
            .iter()
            .find(|p| p.app == app && p.route == route)
    }

    /// The canary weights actually used: the configured steps with intermediate steps inserted
    /// wherever one step would move more than `limits.max_traffic_shift`.
    pub fn canary_schedule(&self) -> Vec<f64> {
        let max = self.limits.max_traffic_shift.clamp(f64::EPSILON, 1.0);
        let mut out = Vec::new();
        let mut last = 0.0_f64;
        for &step in &self.canary.steps {
            while step - last > max + 1e-12 {
                last += max;
                out.push(round9(last));
            }
            out.push(step);
            last = step;
        }
        out
    }
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_toml() {
        DecisionConfig::default().validate().unwrap();
        let cfg: DecisionConfig = toml::from_str(
            r#"
            mode = "auto"
            alpha = 0.05
            [limits]
            cooldown_ms = 1000
            [[routes]]
            app = "shop"
            route = "chat"
            fallback = { provider = "anthropic", model = "claude" }
            cheaper = { provider = "openai", model = "mini", quality_margin = 0.1 }
            [[routes.self_hosted]]
            provider = "vllm"
            model = "llama"
            model_location = "s3://models/llama"
            max_cost_per_call_usd = 0.001
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.mode, Mode::Auto);
        assert_eq!(cfg.limits.cooldown_ms, 1000);
        assert_eq!(cfg.limits.max_traffic_shift, 0.5);
        let p = cfg.policy("shop", "chat").unwrap();
        assert_eq!(p.self_hosted[0].max_latency_p95_ms, None);
        assert!(cfg.policy("shop", "other").is_none());
    }

    #[test]
    fn the_fallback_chain_starts_with_the_single_fallback_and_names_each_model_once() {
        let m = |p: &str, n: &str| ModelRef {
            provider: p.into(),
            model: n.into(),
        };
        let cfg: DecisionConfig = toml::from_str(
            r#"
            [[routes]]
            app = "shop"
            route = "chat"
            fallback = { provider = "anthropic", model = "claude" }
            fallbacks = [
                { provider = "google", model = "gemini" },
                { provider = "anthropic", model = "claude" },
                { provider = "mistral", model = "large" },
            ]
            "#,
        )
        .unwrap();
        let p = cfg.policy("shop", "chat").unwrap();
        let chain: Vec<ModelRef> = p.fallback_chain().into_iter().cloned().collect();
        assert_eq!(
            chain,
            vec![
                m("anthropic", "claude"),
                m("google", "gemini"),
                m("mistral", "large")
            ]
        );
        let mut cfg = DecisionConfig::default();
        cfg.failback.probe_share = 0.0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cfg = DecisionConfig {
            alpha: 1.0,
            ..DecisionConfig::default()
        };
        assert!(cfg.validate().is_err());
        let mut cfg = DecisionConfig::default();
        cfg.canary.steps = vec![0.5, 0.25, 1.0];
        assert!(cfg.validate().is_err());
        cfg.canary.steps = vec![0.5];
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn canary_schedule_respects_max_shift() {
        let mut cfg = DecisionConfig::default();
        assert_eq!(cfg.canary_schedule(), vec![0.05, 0.25, 0.5, 1.0]);
        cfg.limits.max_traffic_shift = 0.3;
        assert_eq!(cfg.canary_schedule(), vec![0.05, 0.25, 0.5, 0.8, 1.0]);
        assert_eq!(ErrorSloConfig::default().for_model("a", "b"), 0.05);
    }
}
