//! The routing contract between the decision service and the actuator, with one owner: the
//! routing config of a route and its projection from `config.changes` ([`config`]), and the
//! actions a decision asks for, their params and the targets each leaves behind ([`action`]).
//!
//! The decision service proposes actions in this vocabulary and predicts their targets with the
//! same functions the actuator applies them with, so the two services stand side by side and
//! neither imports the other.

#![warn(missing_docs)]

pub mod action;
pub mod config;

pub use action::{
    canary_targets, decision_step, parse_action, plan, shift_traffic, Action, ApplyError, Plan,
    ACTION_CANARY_STEP, ACTION_QUANTIZE, ACTION_ROLLBACK, ACTION_SET_PARAMS, ACTION_SHIFT_TRAFFIC,
    ACTION_START_CANARY, PARAM_FROM_MODEL, PARAM_FROM_PROVIDER, PARAM_MODEL, PARAM_PROVIDER,
    PARAM_SET_PREFIX, PARAM_SHIFT, PARAM_STEP, PARAM_TARGETS, PARAM_TARGET_VERSION, PARAM_WEIGHT,
};
pub use config::{
    normalize_targets, route_key, targets_from_param, targets_to_param, weight_of, RoutingConfig,
    RoutingError, RoutingProjection, VERSION_HISTORY_LIMIT, WEIGHT_PRECISION,
};
