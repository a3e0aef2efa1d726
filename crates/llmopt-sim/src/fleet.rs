//! The simulated fleet: apps, their routes, traffic and initial routing.
//!
//! A [`FleetSpec`] is the "before" picture the optimizer starts from. The built-in default is
//! shaped so that every strategy has something to act on: a route with a small share on a
//! cheaper candidate (cheaper-model canary), a route on a self-hosted model (quantization
//! request), routes with a configured `fallback` chain param (failover; `provider/model,...`,
//! first entry first), and a route whose prompt a human will change (regression rollback, driven by the [`crate::Scenario`]).

use std::collections::{BTreeMap, BTreeSet};

use llmopt_events::{RouteTarget, Strategy};
use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, LogNormal};
use crate::error::{check_range, SimError};
use crate::scenario::{GroundTruth, GroundTruthKind};
use crate::tenants::NoisyTenant;
use crate::traffic::TrafficShape;

/// Token counts of a route's calls: what the route's prompts and answers look like, which is a
/// property of the use case rather than of the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenProfile {
    /// Input (prompt) tokens.
    pub input: LogNormal,
    /// Output (completion) tokens of successful calls.
    pub output: LogNormal,
    /// Cap on output tokens (the route's `max_tokens`); draws above it are truncated.
    pub max_output: i64,
}

impl Default for TokenProfile {
    fn default() -> Self {
        Self {
            input: LogNormal::new(800.0, 0.5),
            output: LogNormal::new(200.0, 0.6),
            max_output: 4096,
        }
    }
}

impl TokenProfile {
    fn validate(&self, field: &str) -> Result<(), SimError> {
        self.input.validate(&format!("{field}.input"))?;
        self.output.validate(&format!("{field}.output"))?;
        if self.max_output < 1 {
            return Err(SimError::invalid(
                format!("{field}.max_output"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// One route (use case) of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Route name, unique within the app.
    pub name: String,
    /// Mean calls per simulated second (Poisson arrivals).
    pub calls_per_s: f64,
    /// Initial routing: providers/models and their traffic shares (summing to 1); what the
    /// route uses until the live config says otherwise.
    pub targets: Vec<RouteTarget>,
    /// Initial routing params (prompt_version, temperature, fallback, ...), carried into the
    /// INITIAL config change.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Token counts of the route's calls.
    #[serde(default)]
    pub tokens: TokenProfile,
    /// The models this route could use and their mean quality on its task (`provider/model`
    /// → mean score): a cheap model can be good at one task and bad at another. A model not
    /// listed scores its catalogue mean here. The listed models and the initial targets are the
    /// route's choices: an optimizer's allowed set, and the baselines' candidates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quality: BTreeMap<String, f64>,
}

impl RouteSpec {
    /// Mean quality of `provider/model` on this route.
    pub fn quality_of(&self, catalogue: &Catalogue, provider: &str, model: &str) -> Option<f64> {
        self.quality
            .get(&format!("{provider}/{model}"))
            .copied()
            .or_else(|| catalogue.get(provider, model).map(|m| m.quality_mean))
    }

    /// The route's choices: its initial targets, then the models of [`RouteSpec::quality`]
    /// (each once, as `(provider, model)`).
    pub fn choices(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let listed = self.quality.keys().filter_map(|k| {
            let (p, m) = k.split_once('/')?;
            Some((p.to_string(), m.to_string()))
        });
        for key in self
            .targets
            .iter()
            .map(|t| (t.provider.clone(), t.model.clone()))
            .chain(listed)
        {
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    /// The most capable choice: the highest mean quality on this route (first on ties).
    pub fn most_capable(&self, catalogue: &Catalogue) -> Option<(String, String)> {
        let mut best: Option<((String, String), f64)> = None;
        for (p, m) in self.choices() {
            let Some(q) = self.quality_of(catalogue, &p, &m) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, b)| q > *b) {
                best = Some(((p, m), q));
            }
        }
        best.map(|(k, _)| k)
    }
}

/// One application and its routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    /// App name; also the CloudEvents source `/apps/{name}`.
    pub name: String,
    /// Tenants the app's calls are made for (picked uniformly); empty ⇒ calls carry no tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The app's routes.
    pub routes: Vec<RouteSpec>,
}

fn default_cost_reported_share() -> f64 {
    0.7
}

fn default_quality_share() -> f64 {
    0.4
}

/// The whole simulated fleet: apps, routes, the model catalogue and how complete the
/// telemetry is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSpec {
    /// The applications.
    pub apps: Vec<AppSpec>,
    /// The models routes may use; defaults to [`Catalogue::builtin`].
    #[serde(default)]
    pub catalogue: Catalogue,
    /// Share of calls that report `cost_usd` themselves; the rest leave it to ingest, as many
    /// real producers do (calls under a cost incident always report it).
    #[serde(default = "default_cost_reported_share")]
    pub cost_reported_share: f64,
    /// Share of successful calls that carry a quality score (user feedback or an evaluator
    /// only ever sees a sample).
    #[serde(default = "default_quality_share")]
    pub quality_share: f64,
    /// How call volume and latency vary over the day and week; flat by default.
    #[serde(default)]
    pub traffic: TrafficShape,
    /// Tenants whose batch jobs and bursts come on top of their apps' traffic; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noisy_tenants: Vec<NoisyTenant>,
}

fn target(provider: &str, model: &str, weight: f64) -> RouteTarget {
    RouteTarget {
        provider: provider.to_string(),
        model: model.to_string(),
        weight,
    }
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tokens(input: (f64, f64), output: (f64, f64), max_output: i64) -> TokenProfile {
    TokenProfile {
        input: LogNormal::new(input.0, input.1),
        output: LogNormal::new(output.0, output.1),
        max_output,
    }
}

fn route_quality(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, q)| (k.to_string(), *q)).collect()
}

fn tenants(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

impl Default for FleetSpec {
    /// Three apps, five routes, 11.5 calls/s in all; the crate docs tabulate the layout.
    fn default() -> Self {
        Self {
            apps: vec![
                AppSpec {
                    name: "checkout".to_string(),
                    tenants: tenants(&["acme", "globex", "initech"]),
                    routes: vec![
                        RouteSpec {
                            name: "order-summary".to_string(),
                            calls_per_s: 2.0,
                            targets: vec![
                                target("openai", "gpt-4o", 0.92),
                                target("openai", "gpt-4o-mini", 0.08),
                            ],
                            params: params(&[
                                ("prompt_version", "12"),
                                ("temperature", "0.2"),
                                ("max_tokens", "512"),
                                ("fallback", "anthropic/claude-3-5-sonnet"),
                            ]),
                            tokens: tokens((1200.0, 0.4), (220.0, 0.5), 512),
                            quality: route_quality(&[
                                ("openai/gpt-4o-mini", 0.86),
                                ("anthropic/claude-3-5-haiku", 0.84),
                                ("google/gemini-1.5-flash", 0.74),
                                ("google/gemini-1.5-pro", 0.87),
                            ]),
                        },
                        RouteSpec {
                            name: "address-normalize".to_string(),
                            calls_per_s: 3.0,
                            targets: vec![target("self-hosted", "llama-3.1-8b", 1.0)],
                            params: params(&[
                                ("prompt_version", "3"),
                                ("temperature", "0"),
                                ("max_tokens", "128"),
                                ("fallback", "openai/gpt-4o-mini"),
                            ]),
                            tokens: tokens((300.0, 0.3), (60.0, 0.4), 128),
                            quality: route_quality(&[
                                ("openai/gpt-4o-mini", 0.86),
                                ("openai/gpt-4o", 0.88),
                                ("google/gemini-1.5-flash", 0.72),
                            ]),
                        },
                    ],
                },
                AppSpec {
                    name: "support-bot".to_string(),
                    tenants: tenants(&["acme", "umbrella"]),
                    routes: vec![
                        RouteSpec {
                            name: "answer".to_string(),
                            calls_per_s: 1.5,
                            targets: vec![target("anthropic", "claude-3-5-sonnet", 1.0)],
                            params: params(&[
                                ("prompt_version", "7"),
                                ("temperature", "0.3"),
                                ("max_tokens", "1024"),
                                ("fallback", "openai/gpt-4o"),
                            ]),
                            tokens: tokens((2500.0, 0.5), (350.0, 0.6), 1024),
                            quality: route_quality(&[
                                ("openai/gpt-4o", 0.88),
                                ("anthropic/claude-3-5-haiku", 0.87),
                                ("google/gemini-1.5-pro", 0.88),
                                ("openai/gpt-4o-mini", 0.79),
                            ]),
                        },
                        RouteSpec {
                            name: "triage".to_string(),
                            calls_per_s: 1.0,
                            targets: vec![target("anthropic", "claude-3-5-haiku", 1.0)],
                            params: params(&[
                                ("prompt_version", "4"),
                                ("temperature", "0"),
                                ("max_tokens", "64"),
                                ("fallback", "openai/gpt-4o-mini,google/gemini-1.5-flash"),
                            ]),
                            tokens: tokens((600.0, 0.4), (20.0, 0.3), 64),
                            quality: route_quality(&[
                                ("openai/gpt-4o-mini", 0.86),
                                ("google/gemini-1.5-flash", 0.83),
                                ("openai/gpt-4o", 0.88),
                            ]),
                        },
                    ],
                },
                AppSpec {
                    name: "search".to_string(),
                    tenants: tenants(&["acme", "globex", "hooli", "umbrella"]),
                    routes: vec![RouteSpec {
                        name: "query-rewrite".to_string(),
                        calls_per_s: 4.0,
                        targets: vec![target("google", "gemini-1.5-flash", 1.0)],
                        params: params(&[
                            ("prompt_version", "9"),
                            ("temperature", "0"),
                            ("max_tokens", "64"),
                            ("fallback", "openai/gpt-4o-mini,anthropic/claude-3-5-haiku"),
                        ]),
                        tokens: tokens((150.0, 0.3), (30.0, 0.4), 64),
                        quality: route_quality(&[
                            ("openai/gpt-4o-mini", 0.86),
                            ("anthropic/claude-3-5-haiku", 0.85),
                            ("openai/gpt-4o", 0.88),
                        ]),
                    }],
                },
            ],
            catalogue: Catalogue::builtin(),
            cost_reported_share: default_cost_reported_share(),
            quality_share: default_quality_share(),
            traffic: TrafficShape::default(),
            noisy_tenants: Vec::new(),
        }
    }
}

/// Weights may be off by rounding, not by intent.
const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// A traffic share at or below this on a cheaper model marks it as a candidate under trial.
const CANDIDATE_MAX_SHARE: f64 = 0.25;

impl FleetSpec {
    /// Parses a fleet from TOML and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let fleet: Self = toml::from_str(text)?;
        fleet.validate()?;
        Ok(fleet)
    }

    /// Writes the fleet as TOML.
    pub fn to_toml_string(&self) -> Result<String, SimError> {
        Ok(toml::to_string(self)?)
    }

    /// Every (app, route) pair, in declaration order (the order routes are simulated in).
    pub fn routes(&self) -> impl Iterator<Item = (&AppSpec, &RouteSpec)> {
        self.apps
            .iter()
            .flat_map(|a| a.routes.iter().map(move |r| (a, r)))
    }

    /// The route `app/route`, if the fleet has it.
    pub fn route(&self, app: &str, route: &str) -> Option<&RouteSpec> {
        self.apps
            .iter()
            .find(|a| a.name == app)?
            .routes
            .iter()
            .find(|r| r.name == route)
    }

    /// Checks names, rates, weights and that every target is in the catalogue, so the
    /// simulator never meets a configuration it cannot run.
    pub fn validate(&self) -> Result<(), SimError> {
        self.catalogue.validate()?;
        check_range("cost_reported_share", self.cost_reported_share, 0.0, 1.0)?;
        check_range("quality_share", self.quality_share, 0.0, 1.0)?;
        self.traffic.validate()?;
        for (i, noisy) in self.noisy_tenants.iter().enumerate() {
            let field = format!("noisy_tenants[{i}]");
            noisy.validate(&field)?;
            if !self.apps.iter().any(|a| a.tenants.contains(&noisy.tenant)) {
                return Err(SimError::invalid(
                    format!("{field}.tenant"),
                    format!("no app lists tenant {}", noisy.tenant),
                ));
            }
        }
        if self.apps.is_empty() {
            return Err(SimError::invalid("apps", "the fleet has no apps"));
        }
        let mut app_names = BTreeSet::new();
        for app in &self.apps {
            check_name("app", &app.name)?;
            if !app_names.insert(app.name.as_str()) {
                return Err(SimError::Duplicate {
                    what: "app",
                    name: app.name.clone(),
                });
            }
            if app.routes.is_empty() {
                return Err(SimError::invalid(
                    format!("apps.{}.routes", app.name),
                    "the app has no routes",
                ));
            }
            let mut route_names = BTreeSet::new();
            for route in &app.routes {
                check_name("route", &route.name)?;
                if !route_names.insert(route.name.as_str()) {
                    return Err(SimError::Duplicate {
                        what: "route",
                        name: format!("{}/{}", app.name, route.name),
                    });
                }
                self.validate_route(&app.name, route)?;
            }
        }
        Ok(())
    }

    fn validate_route(&self, app: &str, route: &RouteSpec) -> Result<(), SimError> {
        let f = format!("{app}/{}", route.name);
        check_range(&format!("{f}.calls_per_s"), route.calls_per_s, 0.0, 1e6)?;
        route.tokens.validate(&format!("{f}.tokens"))?;
        if route.targets.is_empty() {
            return Err(SimError::invalid(format!("{f}.targets"), "no targets"));
        }
        let mut sum = 0.0;
        for t in &route.targets {
            if self.catalogue.get(&t.provider, &t.model).is_none() {
                return Err(SimError::UnknownModel {
                    context: format!("{f}.targets"),
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                });
            }
            check_range(&format!("{f}.targets.weight"), t.weight, 0.0, 1.0)?;
            sum += t.weight;
        }
        for (key, q) in &route.quality {
            let known = key
                .split_once('/')
                .is_some_and(|(p, m)| self.catalogue.get(p, m).is_some());
            if !known {
                return Err(SimError::invalid(
                    format!("{f}.quality.{key}"),
                    "not a provider/model of the catalogue",
                ));
            }
            check_range(&format!("{f}.quality.{key}"), *q, 0.0, 1.0)?;
        }
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(SimError::invalid(
                format!("{f}.targets"),
                format!("weights sum to {sum}, not 1"),
            ));
        }
        Ok(())
    }

    /// Standing optimisation opportunities built into the fleet (not incidents): every route
    /// that sends a small share (≤ 25 %) to a model cheaper than its main target invites a
    /// cheaper-model canary. Ground truth for the demo's summary, starting at `start_ms`.
    pub fn opportunities(&self, start_ms: i64) -> Vec<GroundTruth> {
        let mut out = Vec::new();
        for (app, route) in self.routes() {
            let Some(main) = route
                .targets
                .iter()
                .max_by(|a, b| a.weight.total_cmp(&b.weight))
            else {
                continue;
            };
            let Some(main_profile) = self.catalogue.get(&main.provider, &main.model) else {
                continue;
            };
            for t in &route.targets {
                let cheaper = self
                    .catalogue
                    .get(&t.provider, &t.model)
                    .is_some_and(|p| p.blended_usd_per_1m() < main_profile.blended_usd_per_1m());
                if t.weight > 0.0 && t.weight <= CANDIDATE_MAX_SHARE && cheaper {
                    out.push(GroundTruth {
                        name: format!("cheaper-candidate-{}-{}", app.name, route.name),
                        kind: GroundTruthKind::CheaperCandidate,
                        start_ms,
                        end_ms: None,
                        app: Some(app.name.clone()),
                        route: Some(route.name.clone()),
                        provider: Some(t.provider.clone()),
                        model: Some(t.model.clone()),
                        expected_strategy: Some(Strategy::CheaperModelCanary),
                    });
                }
            }
        }
        out
    }
}

/// Names end up in keys like `app/route` and ids like `{app}/{route}/v{n}`.
fn check_name(what: &str, name: &str) -> Result<(), SimError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(SimError::invalid(
            format!("{what} name {name:?}"),
            "must be non-empty, without '/' or whitespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fleet_is_valid_and_has_the_needed_routes() {
        let f = FleetSpec::default();
        assert!(f.validate().is_ok(), "{:?}", f.validate());
        assert!(f.routes().any(|(_, r)| r
            .targets
            .iter()
            .any(|t| t.provider == "self-hosted" && t.model == "llama-3.1-8b")));
        let opp = f.opportunities(0);
        assert_eq!(opp.len(), 1);
        assert_eq!(opp[0].route.as_deref(), Some("order-summary"));
        assert_eq!(opp[0].model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn fleet_toml_round_trips() {
        let f = FleetSpec::default();
        let text = f.to_toml_string();
        assert!(text.is_ok(), "{text:?}");
        let back = FleetSpec::from_toml_str(&text.unwrap_or_default());
        assert!(matches!(back, Ok(ref b) if *b == f), "{back:?}");
    }

    #[test]
    fn invalid_fleets_are_rejected() {
        let mut f = FleetSpec::default();
        f.apps[0].routes[0].targets[0].model = "gpt-9".to_string();
        assert!(matches!(f.validate(), Err(SimError::UnknownModel { .. })));

        let mut f = FleetSpec::default();
        f.apps[0].routes[0].targets[0].weight = 0.5;
        assert!(matches!(f.validate(), Err(SimError::InvalidValue { .. })));

        let mut f = FleetSpec::default();
        f.apps[1].name = "checkout".to_string();
        assert!(matches!(f.validate(), Err(SimError::Duplicate { .. })));

        let mut f = FleetSpec::default();
        f.apps[0].routes[0].calls_per_s = f64::NAN;
        assert!(matches!(f.validate(), Err(SimError::InvalidValue { .. })));
    }
}
