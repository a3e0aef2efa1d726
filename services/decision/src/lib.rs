//! The `decision` service: Turns metrics and anomalies into optimisation decisions backed by statistical evidence.
//!
//! The deterministic core ([`Decision`]) consumes `windows`, `anomalies`, `config.changes` and
//! `decisions`, runs the strategies (regression rollback, failover, cheaper-model canary,
//! quantization request) under the safety limits of [`DecisionConfig`], and owns each
//! decision's lifecycle (PROPOSED/APPROVED → APPLYING → VERIFYING → SUCCEEDED or ROLLED_BACK,
//! REJECTED, EXPIRED) as described in `docs/closed-loop.md`.

#![warn(missing_docs)]

pub mod config;
mod core;
pub mod history;
pub mod lifecycle;
pub mod stats;
pub mod strategies;

pub use crate::config::{
    CanaryConfig, CheaperCandidate, ConfigError, DecisionConfig, ErrorSloConfig, ErrorSloOverride,
    Mode, ModelRef, RegressionConfig, RoutePolicy, SafetyLimits, SelfHostedModel,
};
pub use crate::core::{Decision, SnapshotError};

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "decision";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
