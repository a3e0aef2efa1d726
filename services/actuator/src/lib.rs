//! The `actuator` service: Applies decisions to the live routing config (versioned, idempotent, canary steps, rollback).
//!
//! The deterministic core ([`Actuator`]) consumes `decisions` and `config.changes`, keeps the
//! routing-config projection (last change per app/route) and turns each approved decision step
//! into exactly one versioned [`llmopt_events::ConfigChange`]. The runner writes the projection
//! to the state store with [`write_live_config`] (compare-and-set on the version).

#![warn(missing_docs)]

mod core;
mod live;
mod shell;

// The routing contract lives in `llmopt-routing`; re-exported for the actuator's own users.
pub use core::Actuator;
pub use live::{live_key, read_live_config, write_live_config, LiveConfigError, LIVE_KEY_PREFIX};
pub use llmopt_routing::{
    canary_targets, decision_step, normalize_targets, parse_action, plan, route_key, shift_traffic,
    targets_from_param, targets_to_param, weight_of, Action, ApplyError, Plan, RoutingConfig,
    RoutingError, RoutingProjection, ACTION_CANARY_STEP, ACTION_QUANTIZE, ACTION_ROLLBACK,
    ACTION_SHIFT_TRAFFIC, ACTION_START_CANARY, PARAM_FROM_MODEL, PARAM_FROM_PROVIDER, PARAM_MODEL,
    PARAM_PROVIDER, PARAM_SHIFT, PARAM_STEP, PARAM_TARGETS, PARAM_TARGET_VERSION, PARAM_WEIGHT,
    VERSION_HISTORY_LIMIT, WEIGHT_PRECISION,
};
pub use shell::LiveConfigEffects;

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "actuator";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
