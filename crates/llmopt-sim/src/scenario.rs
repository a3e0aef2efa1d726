//! Incident scenarios: what goes wrong in the simulated fleet, and when.
//!
//! A scenario is the script of a demo or an end-to-end test: a list of incidents, each timed in
//! simulated seconds from the simulator's start, with quiet periods between them so that the
//! detectors' baselines settle and each incident can be attributed. Every incident also states
//! its ground truth ([`GroundTruth`]): what it affects and which decision strategy, if any, the
//! closed loop is expected to answer with, so the demo can score itself.
//!
//! # File format (TOML)
//!
//! ```toml
//! name = "default"
//! description = "two hours of a small fleet"   # optional
//! duration_s = 7200                            # how long the demo should run
//!
//! # The provider fails a share of calls for a while (expected: FAILOVER).
//! [[incidents]]
//! name = "gemini-flash-outage"
//! kind = "provider_error_burst"
//! provider = "google"
//! model = "gemini-1.5-flash"
//! start_s = 1200
//! duration_s = 600
//! error_rate = 0.3
//!
//! # At at_s the simulator emits a MANUAL ConfigChange on the route (same targets,
//! # prompt_version bumped, version = current + 1); calls served under that version are
//! # latency_factor × slower until the route's version changes again, e.g. by a rollback
//! # (expected: REGRESSION_ROLLBACK).
//! [[incidents]]
//! name = "support-prompt-slow"
//! kind = "latency_regression_after_config_change"
//! app = "support-bot"
//! route = "answer"
//! at_s = 2700
//! latency_factor = 2.0
//!
//! # Calls to the model are billed factor × list price; they always report cost_usd
//! # (expected: none, an alert).
//! [[incidents]]
//! name = "sonnet-billing-spike"
//! kind = "cost_spike"
//! provider = "anthropic"
//! model = "claude-3-5-sonnet"
//! start_s = 4200
//! duration_s = 600
//! factor = 3.0
//!
//! # From start_s on, the self-hosted model costs factor × its usual GPU cost per call, for
//! # good (expected: QUANTIZATION_REQUEST).
//! [[incidents]]
//! name = "llama-gpu-cost"
//! kind = "self_hosted_too_expensive"
//! model = "llama-3.1-8b"
//! factor = 2.5
//! start_s = 5100
//!
//! # The model's mean quality falls by drop_per_hour per simulated hour from start_s on
//! # (expected: none, an alert).
//! [[incidents]]
//! name = "haiku-quality-drift"
//! kind = "quality_drift"
//! provider = "anthropic"
//! model = "claude-3-5-haiku"
//! start_s = 5700
//! drop_per_hour = 0.2
//! ```
//!
//! This is exactly [`Scenario::default`]; `scenarios/default.toml` in this crate holds it too.
//! Model-level incidents affect every route that sends traffic to the model.

use std::collections::BTreeSet;

use llmopt_events::Strategy;
use serde::{Deserialize, Serialize};

use crate::error::{check_positive, check_range, SimError};
use crate::fleet::FleetSpec;

/// Offsets beyond ten years are certainly typos, and capping them keeps ms arithmetic exact.
const MAX_OFFSET_S: u64 = 10 * 365 * 86_400;

/// `start_ms + seconds`, in ms; saturating so no input can overflow.
pub(crate) fn offset_ms(start_ms: i64, seconds: u64) -> i64 {
    let ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    start_ms.saturating_add(ms)
}

/// A scripted sequence of incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Scenario name, for logs and the demo's summary.
    pub name: String,
    /// Free text shown to the operator.
    #[serde(default)]
    pub description: String,
    /// How long the scenario is meant to run, in simulated seconds; advisory (the simulator
    /// keeps producing traffic if advanced further).
    pub duration_s: u64,
    /// The incidents, in any order.
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

/// One incident: a name (for the summary) and what happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Unique name within the scenario.
    pub name: String,
    /// What happens, tagged by `kind` in the file.
    #[serde(flatten)]
    pub kind: IncidentKind,
}

/// The kinds of incident the simulator can play. Times are simulated seconds from start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IncidentKind {
    /// A provider/model fails `error_rate` of its calls during the window (an outage or a bad
    /// deploy on the provider's side); the failover strategy should move routes away.
    ProviderErrorBurst {
        /// Affected provider.
        provider: String,
        /// Affected model.
        model: String,
        /// Start, seconds from the simulator's start.
        start_s: u64,
        /// Length of the burst in seconds.
        duration_s: u64,
        /// Probability that a call fails during the burst (if above the base rate).
        error_rate: f64,
    },
    /// Someone changes a route's config by hand (the simulator emits the MANUAL change) and
    /// the new version is slower; the regression-rollback strategy should undo it.
    LatencyRegressionAfterConfigChange {
        /// App of the changed route.
        app: String,
        /// The changed route.
        route: String,
        /// When the change is made, seconds from start.
        at_s: u64,
        /// Latency multiplier of calls served under the new version.
        latency_factor: f64,
    },
    /// A model's quality slowly degrades (a silent provider-side update); only an alert can
    /// catch it.
    QualityDrift {
        /// Affected provider.
        provider: String,
        /// Affected model.
        model: String,
        /// Start of the drift, seconds from start.
        start_s: u64,
        /// Fall in mean quality score per simulated hour.
        drop_per_hour: f64,
    },
    /// A provider bills a model at `factor` × list price for a while (a pricing or metering
    /// error); cost alerts should fire.
    CostSpike {
        /// Affected provider.
        provider: String,
        /// Affected model.
        model: String,
        /// Start, seconds from start.
        start_s: u64,
        /// Length in seconds.
        duration_s: u64,
        /// Cost multiplier.
        factor: f64,
    },
    /// A self-hosted model becomes `factor` × more expensive per call for good (GPU prices up,
    /// utilisation down); a quantization request should follow.
    SelfHostedTooExpensive {
        /// Affected self-hosted model (any self-hosted provider serving it).
        model: String,
        /// Cost multiplier.
        factor: f64,
        /// Start, seconds from start.
        start_s: u64,
    },
}

/// What an incident (or a built-in opportunity) is, for the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundTruthKind {
    /// [`IncidentKind::ProviderErrorBurst`].
    ProviderErrorBurst,
    /// [`IncidentKind::LatencyRegressionAfterConfigChange`].
    LatencyRegressionAfterConfigChange,
    /// [`IncidentKind::QualityDrift`].
    QualityDrift,
    /// [`IncidentKind::CostSpike`].
    CostSpike,
    /// [`IncidentKind::SelfHostedTooExpensive`].
    SelfHostedTooExpensive,
    /// A route trying a cheaper model on a small share ([`FleetSpec::opportunities`]).
    CheaperCandidate,
}

impl GroundTruthKind {
    /// The snake_case name used in scenario files and summaries.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ProviderErrorBurst => "provider_error_burst",
            Self::LatencyRegressionAfterConfigChange => "latency_regression_after_config_change",
            Self::QualityDrift => "quality_drift",
            Self::CostSpike => "cost_spike",
            Self::SelfHostedTooExpensive => "self_hosted_too_expensive",
            Self::CheaperCandidate => "cheaper_candidate",
        }
    }
}

impl std::fmt::Display for GroundTruthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What really happened, so the demo can compare the closed loop's decisions with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Incident (or opportunity) name.
    pub name: String,
    /// What it is.
    pub kind: GroundTruthKind,
    /// When it starts (ms since epoch).
    pub start_ms: i64,
    /// When it ends by itself; `None` if it lasts until something fixes it (or forever).
    pub end_ms: Option<i64>,
    /// Affected app, when the incident is tied to a route.
    pub app: Option<String>,
    /// Affected route.
    pub route: Option<String>,
    /// Affected provider, when the incident is tied to a model.
    pub provider: Option<String>,
    /// Affected model.
    pub model: Option<String>,
    /// The decision strategy the closed loop should answer with; `None` when only an alert is
    /// expected.
    pub expected_strategy: Option<Strategy>,
}

impl Incident {
    /// Ground-truth kind of the incident.
    pub fn ground_truth_kind(&self) -> GroundTruthKind {
        match self.kind {
            IncidentKind::ProviderErrorBurst { .. } => GroundTruthKind::ProviderErrorBurst,
            IncidentKind::LatencyRegressionAfterConfigChange { .. } => {
                GroundTruthKind::LatencyRegressionAfterConfigChange
            }
            IncidentKind::QualityDrift { .. } => GroundTruthKind::QualityDrift,
            IncidentKind::CostSpike { .. } => GroundTruthKind::CostSpike,
            IncidentKind::SelfHostedTooExpensive { .. } => GroundTruthKind::SelfHostedTooExpensive,
        }
    }

    /// The strategy the closed loop should answer this incident with, if any.
    pub fn expected_strategy(&self) -> Option<Strategy> {
        match self.kind {
            IncidentKind::ProviderErrorBurst { .. } => Some(Strategy::Failover),
            IncidentKind::LatencyRegressionAfterConfigChange { .. } => {
                Some(Strategy::RegressionRollback)
            }
            IncidentKind::QualityDrift { .. } | IncidentKind::CostSpike { .. } => None,
            IncidentKind::SelfHostedTooExpensive { .. } => Some(Strategy::QuantizationRequest),
        }
    }

    /// Start offset in seconds.
    pub fn start_s(&self) -> u64 {
        match &self.kind {
            IncidentKind::ProviderErrorBurst { start_s, .. }
            | IncidentKind::QualityDrift { start_s, .. }
            | IncidentKind::CostSpike { start_s, .. }
            | IncidentKind::SelfHostedTooExpensive { start_s, .. } => *start_s,
            IncidentKind::LatencyRegressionAfterConfigChange { at_s, .. } => *at_s,
        }
    }

    /// Length in seconds for incidents that end by themselves.
    pub fn duration_s(&self) -> Option<u64> {
        match &self.kind {
            IncidentKind::ProviderErrorBurst { duration_s, .. }
            | IncidentKind::CostSpike { duration_s, .. } => Some(*duration_s),
            _ => None,
        }
    }

    fn validate(&self, fleet: &FleetSpec) -> Result<(), SimError> {
        let f = format!("incidents.{}", self.name);
        if self.name.is_empty() {
            return Err(SimError::invalid("incidents.name", "must not be empty"));
        }
        if self.start_s() > MAX_OFFSET_S || self.duration_s().unwrap_or(0) > MAX_OFFSET_S {
            return Err(SimError::invalid(
                f,
                format!("times must be at most {MAX_OFFSET_S} s"),
            ));
        }
        let model_known = |provider: &str, model: &str| {
            if fleet.catalogue.get(provider, model).is_some() {
                Ok(())
            } else {
                Err(SimError::UnknownModel {
                    context: f.clone(),
                    provider: provider.to_string(),
                    model: model.to_string(),
                })
            }
        };
        let positive_duration = |d: u64| {
            if d == 0 {
                Err(SimError::invalid(format!("{f}.duration_s"), "must be > 0"))
            } else {
                Ok(())
            }
        };
        match &self.kind {
            IncidentKind::ProviderErrorBurst {
                provider,
                model,
                duration_s,
                error_rate,
                ..
            } => {
                model_known(provider, model)?;
                positive_duration(*duration_s)?;
                check_range(&format!("{f}.error_rate"), *error_rate, 0.0, 1.0)
            }
            IncidentKind::LatencyRegressionAfterConfigChange {
                app,
                route,
                latency_factor,
                ..
            } => {
                if fleet.route(app, route).is_none() {
                    return Err(SimError::UnknownRoute {
                        context: f.clone(),
                        app: app.clone(),
                        route: route.clone(),
                    });
                }
                check_positive(&format!("{f}.latency_factor"), *latency_factor)
            }
            IncidentKind::QualityDrift {
                provider,
                model,
                drop_per_hour,
                ..
            } => {
                model_known(provider, model)?;
                check_range(&format!("{f}.drop_per_hour"), *drop_per_hour, 0.0, 1e3)
            }
            IncidentKind::CostSpike {
                provider,
                model,
                duration_s,
                factor,
                ..
            } => {
                model_known(provider, model)?;
                positive_duration(*duration_s)?;
                check_positive(&format!("{f}.factor"), *factor)
            }
            IncidentKind::SelfHostedTooExpensive { model, factor, .. } => {
                if !fleet
                    .catalogue
                    .models
                    .iter()
                    .any(|m| m.self_hosted && &m.model == model)
                {
                    return Err(SimError::UnknownModel {
                        context: format!("{f} (self-hosted)"),
                        provider: "self-hosted".to_string(),
                        model: model.clone(),
                    });
                }
                check_positive(&format!("{f}.factor"), *factor)
            }
        }
    }

    /// Ground truth of this incident in `fleet`: one entry per affected route (routes whose
    /// initial targets include the model), or one without a route if none is.
    fn ground_truth(&self, fleet: &FleetSpec, start_ms: i64) -> Vec<GroundTruth> {
        let base = GroundTruth {
            name: self.name.clone(),
            kind: self.ground_truth_kind(),
            start_ms: offset_ms(start_ms, self.start_s()),
            end_ms: self
                .duration_s()
                .map(|d| offset_ms(start_ms, self.start_s().saturating_add(d))),
            app: None,
            route: None,
            provider: None,
            model: None,
            expected_strategy: self.expected_strategy(),
        };
        let models: Vec<(String, String)> = match &self.kind {
            IncidentKind::LatencyRegressionAfterConfigChange { app, route, .. } => {
                return vec![GroundTruth {
                    app: Some(app.clone()),
                    route: Some(route.clone()),
                    ..base
                }];
            }
            IncidentKind::ProviderErrorBurst {
                provider, model, ..
            }
            | IncidentKind::QualityDrift {
                provider, model, ..
            }
            | IncidentKind::CostSpike {
                provider, model, ..
            } => vec![(provider.clone(), model.clone())],
            IncidentKind::SelfHostedTooExpensive { model, .. } => fleet
                .catalogue
                .models
                .iter()
                .filter(|m| m.self_hosted && &m.model == model)
                .map(|m| (m.provider.clone(), m.model.clone()))
                .collect(),
        };
        let mut out = Vec::new();
        for (provider, model) in &models {
            let with_model = GroundTruth {
                provider: Some(provider.clone()),
                model: Some(model.clone()),
                ..base.clone()
            };
            let mut any = false;
            for (app, route) in fleet.routes() {
                if route
                    .targets
                    .iter()
                    .any(|t| &t.provider == provider && &t.model == model && t.weight > 0.0)
                {
                    any = true;
                    out.push(GroundTruth {
                        app: Some(app.name.clone()),
                        route: Some(route.name.clone()),
                        ..with_model.clone()
                    });
                }
            }
            if !any {
                out.push(with_model);
            }
        }
        out
    }
}

fn incident(name: &str, kind: IncidentKind) -> Incident {
    Incident {
        name: name.to_string(),
        kind,
    }
}

impl Default for Scenario {
    /// Two simulated hours of the default fleet: 20 quiet minutes of warm-up, then five
    /// incidents separated by quiet periods (see the module docs for the timeline).
    fn default() -> Self {
        Self {
            name: "default".to_string(),
            description: "two hours of a small fleet".to_string(),
            duration_s: 7200,
            incidents: vec![
                incident(
                    "gemini-flash-outage",
                    IncidentKind::ProviderErrorBurst {
                        provider: "google".to_string(),
                        model: "gemini-1.5-flash".to_string(),
                        start_s: 1200,
                        duration_s: 600,
                        error_rate: 0.3,
                    },
                ),
                incident(
                    "support-prompt-slow",
                    IncidentKind::LatencyRegressionAfterConfigChange {
                        app: "support-bot".to_string(),
                        route: "answer".to_string(),
                        at_s: 2700,
                        latency_factor: 2.0,
                    },
                ),
                incident(
                    "sonnet-billing-spike",
                    IncidentKind::CostSpike {
                        provider: "anthropic".to_string(),
                        model: "claude-3-5-sonnet".to_string(),
                        start_s: 4200,
                        duration_s: 600,
                        factor: 3.0,
                    },
                ),
                incident(
                    "llama-gpu-cost",
                    IncidentKind::SelfHostedTooExpensive {
                        model: "llama-3.1-8b".to_string(),
                        factor: 2.5,
                        start_s: 5100,
                    },
                ),
                incident(
                    "haiku-quality-drift",
                    IncidentKind::QualityDrift {
                        provider: "anthropic".to_string(),
                        model: "claude-3-5-haiku".to_string(),
                        start_s: 5700,
                        drop_per_hour: 0.2,
                    },
                ),
            ],
        }
    }
}

impl Scenario {
    /// Parses a scenario from TOML; checks what can be checked without a fleet (names, ranges
    /// that do not depend on the catalogue are checked by [`Scenario::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let s: Self = toml::from_str(text)?;
        s.check_names()?;
        Ok(s)
    }

    /// Writes the scenario as TOML (the format of the module docs).
    pub fn to_toml_string(&self) -> Result<String, SimError> {
        Ok(toml::to_string(self)?)
    }

    fn check_names(&self) -> Result<(), SimError> {
        if self.duration_s == 0 || self.duration_s > MAX_OFFSET_S {
            return Err(SimError::invalid(
                "duration_s",
                format!("must be within 1..={MAX_OFFSET_S}"),
            ));
        }
        let mut seen = BTreeSet::new();
        for i in &self.incidents {
            if !seen.insert(i.name.as_str()) {
                return Err(SimError::Duplicate {
                    what: "incident",
                    name: i.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks every incident against `fleet` (models in its catalogue, routes in its apps,
    /// rates and factors in range), so the simulator never plays an incident that cannot
    /// happen.
    pub fn validate(&self, fleet: &FleetSpec) -> Result<(), SimError> {
        self.check_names()?;
        self.incidents.iter().try_for_each(|i| i.validate(fleet))
    }

    /// Ground truth of every incident for a simulator started at `start_ms`, one entry per
    /// affected route, sorted by start time.
    pub fn ground_truth(&self, fleet: &FleetSpec, start_ms: i64) -> Vec<GroundTruth> {
        let mut out: Vec<GroundTruth> = self
            .incidents
            .iter()
            .flat_map(|i| i.ground_truth(fleet, start_ms))
            .collect();
        out.sort_by_key(|g| g.start_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_saturate() {
        assert_eq!(offset_ms(1_000, 2), 3_000);
        assert_eq!(offset_ms(i64::MAX - 1, 5), i64::MAX);
        assert_eq!(offset_ms(0, u64::MAX), i64::MAX);
    }
}
