//! What a decision does to a route's targets: the action vocabulary shared with the decision
//! service and the pure computation of the targets an action leaves behind.
//!
//! Keeping this a pure function of (decision, current config, version history) makes the
//! actuator's behaviour testable without a bus and identical on replay.

use std::collections::BTreeMap;

use llmopt_events::{ChangeKind, Decision, RouteTarget};
use thiserror::Error;

use crate::config::{
    normalize_targets, targets_from_param, weight_of, RoutingConfig, RoutingError,
    RoutingProjection,
};

/// Action: restore the targets of `target_version` (regression rollback, failed verification).
pub const ACTION_ROLLBACK: &str = "rollback_to_version";
/// Action: move traffic from a failing provider/model to a fallback.
pub const ACTION_SHIFT_TRAFFIC: &str = "shift_traffic";
/// Action: give a canary candidate `weight` of the traffic (every canary step uses it).
pub const ACTION_START_CANARY: &str = "start_canary";
/// Accepted alias of [`ACTION_START_CANARY`] for steps after the first.
pub const ACTION_CANARY_STEP: &str = "canary_step";
/// Action: request a quantized build of a self-hosted model; changes no routing config.
pub const ACTION_QUANTIZE: &str = "quantize";
/// Set route parameters (request settings such as `max_tokens`, `temperature`): every decision
/// param named `set.<name>` sets `<name>`; targets are unchanged.
pub const ACTION_SET_PARAMS: &str = "set_params";
/// Prefix of the params a `set_params` decision sets.
pub const PARAM_SET_PREFIX: &str = "set.";

/// Param: version whose targets a rollback restores.
pub const PARAM_TARGET_VERSION: &str = "target_version";
/// Param: JSON list of targets (see [`crate::config::targets_to_param`]): the targets the decision
/// expects to leave behind, used when the actuator has no config or version to start from.
pub const PARAM_TARGETS: &str = "targets";
/// Param: provider that receives traffic (fallback or canary candidate).
pub const PARAM_PROVIDER: &str = "provider";
/// Param: model that receives traffic (fallback or canary candidate).
pub const PARAM_MODEL: &str = "model";
/// Param: provider that traffic is taken from (failover).
pub const PARAM_FROM_PROVIDER: &str = "from_provider";
/// Param: model that traffic is taken from (failover).
pub const PARAM_FROM_MODEL: &str = "from_model";
/// Param: share of the route's traffic to move (failover), already capped by the safety limit.
pub const PARAM_SHIFT: &str = "shift";
/// Param: canary step (0, 1, ...): with the decision id, what the actuator applies exactly once.
pub const PARAM_STEP: &str = "step";
/// Param: the canary candidate's share of traffic at this step.
pub const PARAM_WEIGHT: &str = "weight";

/// Why a decision cannot be turned into new targets.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The action is not one the actuator knows.
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    /// A param the action needs is missing.
    #[error("action `{action}` needs param `{param}`")]
    MissingParam {
        /// The action.
        action: &'static str,
        /// The missing param.
        param: &'static str,
    },
    /// A param is present but unreadable.
    #[error("param `{param}` = `{value}` is not valid")]
    BadParam {
        /// The param.
        param: &'static str,
        /// Its value.
        value: String,
    },
    /// A rollback names a version the projection no longer (or never) had, and carries no
    /// targets of its own.
    #[error("version {version} of {app}/{route} is unknown and the decision carries no targets")]
    UnknownVersion {
        /// Application.
        app: String,
        /// Route.
        route: String,
        /// The version asked for.
        version: i64,
    },
    /// The route has no config and the decision carries no targets to start from.
    #[error("{app}/{route} has no routing config and the decision carries no targets")]
    NoCurrentConfig {
        /// Application.
        app: String,
        /// Route.
        route: String,
    },
    /// The computed targets are not routable.
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// A decision's action, parsed from its `action` and `params`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Restore the targets of a version.
    RollbackToVersion {
        /// The version to restore.
        target_version: i64,
        /// Targets carried by the decision, used if the version is not in the history.
        targets: Option<Vec<RouteTarget>>,
    },
    /// Move `shift` of the traffic from `from` to `to`.
    ShiftTraffic {
        /// Provider/model losing traffic; when absent, `targets` is applied as is.
        from: Option<(String, String)>,
        /// Provider/model gaining traffic.
        to: (String, String),
        /// Share of the route's traffic to move.
        shift: f64,
        /// Targets carried by the decision (used when there is no current config).
        targets: Option<Vec<RouteTarget>>,
    },
    /// Give the candidate `weight`; the incumbents share the rest in proportion.
    Canary {
        /// Candidate provider/model.
        candidate: (String, String),
        /// Candidate's share of traffic.
        weight: f64,
    },
    /// Set route parameters; targets unchanged.
    SetParams {
        /// Parameter name to value.
        params: BTreeMap<String, String>,
    },
    /// No routing change.
    Quantize,
}

/// The change an action makes: its kind and the targets it leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Kind of the resulting `ConfigChange`.
    pub kind: ChangeKind,
    /// New targets, normalised.
    pub targets: Vec<RouteTarget>,
    /// New route params; `None` keeps the current ones.
    pub params: Option<BTreeMap<String, String>>,
}

fn param<'a>(
    d: &'a Decision,
    action: &'static str,
    name: &'static str,
) -> Result<&'a str, ApplyError> {
    d.params
        .get(name)
        .map(String::as_str)
        .ok_or(ApplyError::MissingParam {
            action,
            param: name,
        })
}

fn parse_f64(name: &'static str, value: &str) -> Result<f64, ApplyError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ApplyError::BadParam {
            param: name,
            value: value.to_string(),
        }),
    }
}

fn carried_targets(d: &Decision) -> Result<Option<Vec<RouteTarget>>, ApplyError> {
    match d.params.get(PARAM_TARGETS) {
        None => Ok(None),
        Some(raw) => targets_from_param(raw)
            .map(Some)
            .map_err(|_| ApplyError::BadParam {
                param: PARAM_TARGETS,
                value: raw.clone(),
            }),
    }
}

/// The canary step a decision event is at (`step` param, 0 when absent): with the decision id,
/// the unit of exactly-once application.
pub fn decision_step(d: &Decision) -> Result<u32, ApplyError> {
    match d.params.get(PARAM_STEP) {
        None => Ok(0),
        Some(raw) => raw.trim().parse::<u32>().map_err(|_| ApplyError::BadParam {
            param: PARAM_STEP,
            value: raw.clone(),
        }),
    }
}

/// Parses a decision's action and params.
pub fn parse_action(d: &Decision) -> Result<Action, ApplyError> {
    match d.action.as_str() {
        ACTION_ROLLBACK => {
            let raw = param(d, ACTION_ROLLBACK, PARAM_TARGET_VERSION)?;
            let target_version = raw
                .trim()
                .parse::<i64>()
                .map_err(|_| ApplyError::BadParam {
                    param: PARAM_TARGET_VERSION,
                    value: raw.to_string(),
                })?;
            Ok(Action::RollbackToVersion {
                target_version,
                targets: carried_targets(d)?,
            })
        }
        ACTION_SHIFT_TRAFFIC => {
            let to = (
                param(d, ACTION_SHIFT_TRAFFIC, PARAM_PROVIDER)?.to_string(),
                param(d, ACTION_SHIFT_TRAFFIC, PARAM_MODEL)?.to_string(),
            );
            let from = match (
                d.params.get(PARAM_FROM_PROVIDER),
                d.params.get(PARAM_FROM_MODEL),
            ) {
                (Some(p), Some(m)) => Some((p.clone(), m.clone())),
                _ => None,
            };
            let shift = match d.params.get(PARAM_SHIFT) {
                Some(raw) => parse_f64(PARAM_SHIFT, raw)?.clamp(0.0, 1.0),
                None => 1.0,
            };
            Ok(Action::ShiftTraffic {
                from,
                to,
                shift,
                targets: carried_targets(d)?,
            })
        }
        ACTION_START_CANARY | ACTION_CANARY_STEP => {
            let candidate = (
                param(d, ACTION_START_CANARY, PARAM_PROVIDER)?.to_string(),
                param(d, ACTION_START_CANARY, PARAM_MODEL)?.to_string(),
            );
            let weight = parse_f64(PARAM_WEIGHT, param(d, ACTION_START_CANARY, PARAM_WEIGHT)?)?;
            if !(0.0..=1.0).contains(&weight) {
                return Err(ApplyError::BadParam {
                    param: PARAM_WEIGHT,
                    value: weight.to_string(),
                });
            }
            Ok(Action::Canary { candidate, weight })
        }
        ACTION_QUANTIZE => Ok(Action::Quantize),
        ACTION_SET_PARAMS => {
            let params: BTreeMap<String, String> = d
                .params
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.strip_prefix(PARAM_SET_PREFIX)?.to_string(), v.clone()))
                })
                .collect();
            if params.is_empty() {
                return Err(ApplyError::MissingParam {
                    action: ACTION_SET_PARAMS,
                    param: PARAM_SET_PREFIX,
                });
            }
            Ok(Action::SetParams { params })
        }
        other => Err(ApplyError::UnknownAction(other.to_string())),
    }
}

/// Moves `shift` (at most what `from` has) from `from` to `to`.
pub fn shift_traffic(
    targets: &[RouteTarget],
    from: (&str, &str),
    to: (&str, &str),
    shift: f64,
) -> Result<Vec<RouteTarget>, RoutingError> {
    let available = weight_of(targets, from.0, from.1);
    let moved = shift.clamp(0.0, 1.0).min(available);
    let mut out: Vec<RouteTarget> = targets
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.provider == from.0 && t.model == from.1 {
                t.weight =
                    (t.weight - moved * t.weight / available.max(f64::MIN_POSITIVE)).max(0.0);
            }
            t
        })
        .collect();
    out.push(RouteTarget {
        provider: to.0.to_string(),
        model: to.1.to_string(),
        weight: moved,
    });
    normalize_targets(&out)
}

/// Gives the candidate `weight`; the other targets share `1 − weight` in proportion to their
/// current weights (they are all scaled by the same factor).
pub fn canary_targets(
    targets: &[RouteTarget],
    candidate: (&str, &str),
    weight: f64,
) -> Result<Vec<RouteTarget>, RoutingError> {
    let weight = weight.clamp(0.0, 1.0);
    let is_candidate = |t: &RouteTarget| t.provider == candidate.0 && t.model == candidate.1;
    let incumbents: f64 = targets
        .iter()
        .filter(|t| !is_candidate(t) && t.weight.is_finite() && t.weight > 0.0)
        .map(|t| t.weight)
        .sum();
    let mut out: Vec<RouteTarget> = Vec::with_capacity(targets.len() + 1);
    if incumbents > 0.0 {
        out.extend(targets.iter().filter(|t| !is_candidate(t)).map(|t| {
            let mut t = t.clone();
            t.weight = (1.0 - weight) * t.weight / incumbents;
            t
        }));
    }
    out.push(RouteTarget {
        provider: candidate.0.to_string(),
        model: candidate.1.to_string(),
        weight: if incumbents > 0.0 { weight } else { 1.0 },
    });
    normalize_targets(&out)
}

/// The targets `action` leaves on `app`/`route`, given its current config and history.
/// `Ok(None)` for actions that change no routing config (quantize).
pub fn plan(
    action: &Action,
    app: &str,
    route: &str,
    projection: &RoutingProjection,
) -> Result<Option<Plan>, ApplyError> {
    let current: Option<&RoutingConfig> = projection.config(app, route);
    let no_config = || ApplyError::NoCurrentConfig {
        app: app.to_string(),
        route: route.to_string(),
    };
    let mut params = None;
    let (kind, targets) = match action {
        Action::Quantize => return Ok(None),
        Action::RollbackToVersion {
            target_version,
            targets,
        } => {
            let restored = match projection.at_version(app, route, *target_version) {
                Some(cfg) => {
                    // A rollback restores the version whole: its params too.
                    params = Some(cfg.params.clone());
                    cfg.targets.clone()
                }
                None => targets.clone().ok_or_else(|| ApplyError::UnknownVersion {
                    app: app.to_string(),
                    route: route.to_string(),
                    version: *target_version,
                })?,
            };
            (ChangeKind::Rollback, normalize_targets(&restored)?)
        }
        Action::SetParams { params: set } => {
            let cfg = current.ok_or_else(no_config)?;
            let mut merged = cfg.params.clone();
            merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            params = Some(merged);
            (ChangeKind::Apply, cfg.targets.clone())
        }
        Action::ShiftTraffic {
            from,
            to,
            shift,
            targets,
        } => {
            let new = match (current, from) {
                (Some(cfg), Some(from)) => {
                    shift_traffic(&cfg.targets, (&from.0, &from.1), (&to.0, &to.1), *shift)?
                }
                _ => normalize_targets(targets.as_deref().ok_or_else(no_config)?)?,
            };
            (ChangeKind::Apply, new)
        }
        Action::Canary { candidate, weight } => {
            let cfg = current.ok_or_else(no_config)?;
            (
                ChangeKind::CanaryStep,
                canary_targets(&cfg.targets, (&candidate.0, &candidate.1), *weight)?,
            )
        }
    };
    Ok(Some(Plan {
        kind,
        targets,
        params,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str, m: &str, w: f64) -> RouteTarget {
        RouteTarget {
            provider: p.into(),
            model: m.into(),
            weight: w,
        }
    }

    fn sum(ts: &[RouteTarget]) -> f64 {
        ts.iter().map(|t| t.weight).sum()
    }

    #[test]
    fn shift_moves_at_most_what_is_there() {
        let out = shift_traffic(&[t("p", "a", 1.0)], ("p", "a"), ("q", "b"), 0.5).unwrap();
        assert!((weight_of(&out, "q", "b") - 0.5).abs() < 1e-9);
        assert!((sum(&out) - 1.0).abs() < 1e-12);
        let out = shift_traffic(
            &[t("p", "a", 0.2), t("r", "c", 0.8)],
            ("p", "a"),
            ("q", "b"),
            0.5,
        )
        .unwrap();
        assert!((weight_of(&out, "q", "b") - 0.2).abs() < 1e-9);
        assert_eq!(weight_of(&out, "p", "a"), 0.0);
        assert!((sum(&out) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn canary_scales_incumbents_proportionally() {
        let out =
            canary_targets(&[t("p", "a", 0.6), t("p", "b", 0.4)], ("q", "cheap"), 0.25).unwrap();
        assert!((weight_of(&out, "q", "cheap") - 0.25).abs() < 1e-9);
        assert!((weight_of(&out, "p", "a") - 0.45).abs() < 1e-9);
        assert!((weight_of(&out, "p", "b") - 0.30).abs() < 1e-9);
        assert!((sum(&out) - 1.0).abs() < 1e-12);
        let full = canary_targets(&out, ("q", "cheap"), 1.0).unwrap();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].weight, 1.0);
    }

    #[test]
    fn unknown_action_and_missing_params_are_errors() {
        let mut d = llmopt_events::samples::decision();
        d.action = "teleport".into();
        d.params.clear();
        assert!(matches!(
            parse_action(&d),
            Err(ApplyError::UnknownAction(_))
        ));
        d.action = ACTION_ROLLBACK.into();
        assert!(matches!(
            parse_action(&d),
            Err(ApplyError::MissingParam { .. })
        ));
        d.action = ACTION_START_CANARY.into();
        d.params.insert(PARAM_PROVIDER.into(), "q".into());
        d.params.insert(PARAM_MODEL.into(), "m".into());
        d.params.insert(PARAM_WEIGHT.into(), "1.5".into());
        assert!(matches!(parse_action(&d), Err(ApplyError::BadParam { .. })));
    }
}
