//! The routing config model and its projection from `config.changes`.
//!
//! The live routing config of an app/route is, by design, nothing but the last `ConfigChange` of
//! that route: keeping the model and the projection in this crate lets the actuator, its runner
//! and the decision service agree on one definition of "current targets" and of "the targets of version
//! N" (which rollbacks need).

use std::collections::BTreeMap;

use llmopt_events::{ConfigChange, RouteTarget};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Granularity weights are rounded to, so that weights written by different processes compare
/// equal and always sum to exactly one within floating-point error.
pub const WEIGHT_PRECISION: f64 = 1e-9;

/// How many past versions per route the projection keeps for rollbacks: enough for any rollback
/// a decision asks for, bounded so a long-lived route does not grow without limit.
pub const VERSION_HISTORY_LIMIT: usize = 256;

/// Why a routing config or a list of targets is unusable.
#[derive(Debug, Error)]
pub enum RoutingError {
    /// No target has a positive, finite weight, so traffic could not be routed anywhere.
    #[error("no target with a positive weight")]
    NoWeight,
    /// The JSON form could not be written or read.
    #[error("routing config JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The routing config of one app/route: which provider/models get which share of its traffic.
///
/// This is what the actuator's runner stores under its live key and what routers read; it is the
/// projection of the route's last [`ConfigChange`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingConfig {
    /// Application name.
    pub app: String,
    /// Route within the application.
    pub route: String,
    /// Version of the change this config comes from (grows by one per change).
    pub version: i64,
    /// Provider/models and their weights (summing to one).
    pub targets: Vec<RouteTarget>,
    /// Route parameters (temperature, max tokens, ...), carried unchanged by decisions.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl RoutingConfig {
    /// The config a change leaves behind: the projection of a single change.
    pub fn from_change(change: &ConfigChange) -> Self {
        Self {
            app: change.app.clone(),
            route: change.route.clone(),
            version: change.version,
            targets: change.targets.clone(),
            params: change.params.clone(),
        }
    }

    /// JSON bytes, the form stored in the state store so that any router can read it.
    pub fn to_json(&self) -> Result<Vec<u8>, RoutingError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads the JSON form back.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RoutingError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Share of the route's traffic that `provider`/`model` gets (0 when it is not a target).
    pub fn weight_of(&self, provider: &str, model: &str) -> f64 {
        weight_of(&self.targets, provider, model)
    }
}

/// Share of traffic `provider`/`model` gets in `targets` (0 when absent): the building block of
/// every traffic-shifting computation.
pub fn weight_of(targets: &[RouteTarget], provider: &str, model: &str) -> f64 {
    targets
        .iter()
        .filter(|t| t.provider == provider && t.model == model)
        .map(|t| t.weight)
        .sum()
}

/// The key of an app/route on the bus (`{app}/{route}`), used for Kafka keys of decisions and
/// config changes so that every event of a route stays in order on one partition.
pub fn route_key(app: &str, route: &str) -> String {
    format!("{app}/{route}")
}

/// Makes a list of targets routable: merges duplicate provider/models, drops non-positive or
/// non-finite weights, scales the rest to sum to one and rounds to [`WEIGHT_PRECISION`], giving
/// the rounding residue to the largest target so the sum stays exactly one. Output is sorted by
/// provider/model, so equal target sets compare equal.
pub fn normalize_targets(targets: &[RouteTarget]) -> Result<Vec<RouteTarget>, RoutingError> {
    let mut merged: BTreeMap<(String, String), f64> = BTreeMap::new();
    for t in targets {
        if t.weight.is_finite() && t.weight > 0.0 {
            *merged
                .entry((t.provider.clone(), t.model.clone()))
                .or_default() += t.weight;
        }
    }
    let total: f64 = merged.values().sum();
    if merged.is_empty() || total <= 0.0 || !total.is_finite() {
        return Err(RoutingError::NoWeight);
    }
    let mut out: Vec<RouteTarget> = merged
        .into_iter()
        .map(|((provider, model), w)| RouteTarget {
            provider,
            model,
            weight: round_weight(w / total),
        })
        .filter(|t| t.weight > 0.0)
        .collect();
    if out.is_empty() {
        return Err(RoutingError::NoWeight);
    }
    let sum: f64 = out.iter().map(|t| t.weight).sum();
    let residue = 1.0 - sum;
    let mut largest = 0;
    for (i, t) in out.iter().enumerate() {
        if t.weight > out[largest].weight {
            largest = i;
        }
    }
    out[largest].weight = round_weight(out[largest].weight + residue);
    Ok(out)
}

fn round_weight(w: f64) -> f64 {
    (w / WEIGHT_PRECISION).round() * WEIGHT_PRECISION
}

/// Encodes targets for a decision's string params (JSON), so a human reading a decision sees
/// the exact targets it would leave behind.
pub fn targets_to_param(targets: &[RouteTarget]) -> String {
    let entries: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "provider": t.provider,
                "model": t.model,
                "weight": t.weight,
            })
        })
        .collect();
    serde_json::Value::Array(entries).to_string()
}

/// Reads targets written by [`targets_to_param`].
pub fn targets_from_param(param: &str) -> Result<Vec<RouteTarget>, RoutingError> {
    Ok(serde_json::from_str(param)?)
}

/// The projection of `config.changes`: the current config per app/route plus the recent
/// versions, so a rollback can restore "the targets of version N" without any other store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoutingProjection {
    current: BTreeMap<(String, String), RoutingConfig>,
    history: BTreeMap<(String, String), BTreeMap<i64, RoutingConfig>>,
}

impl RoutingProjection {
    /// An empty projection (no route known).
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one change in. Returns false when this version of the route was already projected
    /// (a replay or the echo of a change we wrote ourselves), so callers can act once per
    /// change. The current config only moves forward in version, so an out-of-order older
    /// change lands in the history without overwriting a newer config.
    pub fn project(&mut self, change: &ConfigChange) -> bool {
        let key = (change.app.clone(), change.route.clone());
        let versions = self.history.entry(key.clone()).or_default();
        if versions.contains_key(&change.version) {
            return false;
        }
        let cfg = RoutingConfig::from_change(change);
        versions.insert(change.version, cfg.clone());
        while versions.len() > VERSION_HISTORY_LIMIT {
            versions.pop_first();
        }
        let newer = self
            .current
            .get(&key)
            .is_none_or(|c| change.version >= c.version);
        if newer {
            self.current.insert(key, cfg);
        }
        true
    }

    /// The current config of a route, if any change for it was seen.
    pub fn config(&self, app: &str, route: &str) -> Option<&RoutingConfig> {
        self.current.get(&(app.to_string(), route.to_string()))
    }

    /// The config a route had at `version`, if it is still in the history.
    pub fn at_version(&self, app: &str, route: &str, version: i64) -> Option<&RoutingConfig> {
        self.history
            .get(&(app.to_string(), route.to_string()))
            .and_then(|v| v.get(&version))
    }

    /// Every current config, keyed by (app, route).
    pub fn configs(&self) -> &BTreeMap<(String, String), RoutingConfig> {
        &self.current
    }

    /// Takes the current configs out (the actuator's rebuild from the topic).
    pub fn into_configs(self) -> BTreeMap<(String, String), RoutingConfig> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_events::ChangeKind;

    fn t(p: &str, m: &str, w: f64) -> RouteTarget {
        RouteTarget {
            provider: p.into(),
            model: m.into(),
            weight: w,
        }
    }

    fn change(version: i64, targets: Vec<RouteTarget>) -> ConfigChange {
        ConfigChange {
            id: format!("a/r/v{version}"),
            event_time: version * 1000,
            app: "a".into(),
            route: "r".into(),
            version,
            previous_version: (version > 1).then_some(version - 1),
            kind: ChangeKind::Manual,
            decision_id: None,
            targets,
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn normalize_sums_to_one_and_merges() {
        let out = normalize_targets(&[
            t("p", "a", 1.0),
            t("p", "b", 1.0),
            t("p", "a", 1.0),
            t("p", "c", 0.0),
            t("p", "d", f64::NAN),
        ])
        .unwrap();
        assert_eq!(out.len(), 2);
        let sum: f64 = out.iter().map(|t| t.weight).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert!((weight_of(&out, "p", "a") - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn normalize_thirds_sum_to_one() {
        let out =
            normalize_targets(&[t("p", "a", 1.0), t("p", "b", 1.0), t("p", "c", 1.0)]).unwrap();
        let sum: f64 = out.iter().map(|t| t.weight).sum();
        assert!((sum - 1.0).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn normalize_rejects_no_weight() {
        assert!(normalize_targets(&[]).is_err());
        assert!(normalize_targets(&[t("p", "a", 0.0)]).is_err());
    }

    #[test]
    fn json_round_trip() {
        let cfg = RoutingConfig::from_change(&change(3, vec![t("p", "a", 1.0)]));
        let back = RoutingConfig::from_json(&cfg.to_json().unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(RoutingConfig::from_json(b"{nope").is_err());
        let targets = vec![t("p", "a", 0.25), t("q", "b", 0.75)];
        assert_eq!(
            targets_from_param(&targets_to_param(&targets)).unwrap(),
            targets
        );
    }

    #[test]
    fn projection_keeps_newest_and_history() {
        let mut p = RoutingProjection::new();
        assert!(p.project(&change(2, vec![t("p", "b", 1.0)])));
        assert!(p.project(&change(1, vec![t("p", "a", 1.0)])));
        assert!(!p.project(&change(2, vec![t("p", "b", 1.0)])));
        assert_eq!(p.config("a", "r").unwrap().version, 2);
        assert_eq!(p.at_version("a", "r", 1).unwrap().targets[0].model, "a");
        assert!(p.config("a", "other").is_none());
    }
}
