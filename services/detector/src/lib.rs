//! The `detector` service: Streaming anomaly detection and SLO rules on window metrics; publishes anomalies and operator alerts.
//!
//! [`Detector`] is the service's deterministic core (an [`llmopt_runtime::Processor`]): it reads
//! tumbling `WindowAggregate`s from the `windows` topic, keeps a robust baseline per (series,
//! metric) and publishes `Anomaly` events on `anomalies`, and evaluates static SLO rules and
//! persisting anomalies into FIRING/RESOLVED `Alert`s on `alerts`. Time comes only from window
//! timestamps, so replaying the `windows` topic reproduces the same outputs with the same ids.
//!
//! Modules: [`config`] (what operators tune), [`metrics`] (what is measured), [`baseline`] (the
//! pluggable baseline detectors), [`change`] (level shifts and drifts), [`seasonal`] (hour-of-day profiles), [`rules`] (SLO rules with `for`), [`budget`] (spend per period), [`alerts`] (alert
//! lifecycle, dedup and cooldown) and the core that ties them together.

#![warn(missing_docs)]

pub mod alerts;
pub mod baseline;
pub mod budget;
pub mod change;
pub mod config;
mod core;
mod extreme;
pub mod metrics;
pub mod nab;
pub mod rules;
pub mod seasonal;
mod seq_map;

pub use crate::alerts::AlertBook;
pub use crate::baseline::{BaselineDetector, Observation, RobustEwma, RobustEwmaState, Score};
pub use crate::budget::{Budget, BudgetBook, BudgetPeriod};
pub use crate::change::{ChangeConfig, ChangeDetector, ChangeKind, ChangeState, Scale};
pub use crate::config::{
    AnomalyAlertPolicy, Comparison, ConfigError, DetectorConfig, Matchers, RobustEwmaConfig,
    SloRule,
};
pub use crate::core::{change_alertname, Detector, DetectorStats, SnapshotError, SNAPSHOT_VERSION};
pub use crate::extreme::{RangeExceedance, RangeState};
pub use crate::metrics::{Metric, SeriesKey};
pub use crate::seasonal::{SeasonalConfig, SeasonalState};

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "detector";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
