//! The `aggregator` service: Event-time windows per key with watermarks: counts, error rates, latency percentiles from mergeable sketches, tokens, cost, quality.
//!
//! This crate is the service's deterministic core ([`Aggregator`], an
//! [`llmopt_runtime::Processor`]): `LlmCall`s from `telemetry` in, `WindowAggregate`s on
//! `windows` and too-late calls on `telemetry.late` out, with time taken only from event
//! timestamps (see `docs/closed-loop.md`, "Windows (aggregator)"). The runner around it moves
//! records between the transport and the core and checkpoints it with
//! [`Aggregator::snapshot`] / [`Aggregator::restore`].

#![warn(missing_docs)]

mod config;
mod core;
mod dedup;
mod error;
mod fleet_metrics;
mod series;
mod sketch;
mod watermark;
mod window;

pub use crate::config::{AggregatorConfig, HoppingConfig};
pub use crate::core::{Aggregator, SNAPSHOT_VERSION};
pub use crate::error::{ConfigError, SketchError, SnapshotError};
pub use crate::fleet_metrics::FleetMetrics;
pub use crate::sketch::{LatencySketch, RELATIVE_ACCURACY};
pub use crate::watermark::WatermarkTracker;
pub use crate::window::{
    output_id, window_id, SeriesKey, WindowAssigner, WindowBounds, UNKNOWN_ERROR_TYPE,
};

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "aggregator";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
