//! Errors of the aggregator core: each says what was wrong so an operator can fix it.

use thiserror::Error;

/// An [`AggregatorConfig`](crate::AggregatorConfig) that cannot cut time into windows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A window size or hop that is zero or negative.
    #[error("`{field}` must be positive, got {value}")]
    NotPositive {
        /// Offending setting.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A tolerance that is negative.
    #[error("`{field}` must not be negative, got {value}")]
    Negative {
        /// Offending setting.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// Hopping windows that would leave gaps between them.
    #[error("hopping.hop_ms ({hop_ms}) must not exceed hopping.size_ms ({size_ms})")]
    HopLargerThanSize {
        /// Configured hop.
        hop_ms: i64,
        /// Configured size.
        size_ms: i64,
    },
}

/// Serialised sketch bytes that cannot be read back.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SketchError {
    /// The bytes are not a well-formed DDSketch encoding (truncated, unknown flag, bins out of
    /// range); the message says where.
    #[error("malformed latency sketch: {0}")]
    Malformed(String),
    /// A well-formed sketch with another index mapping: merging it would break the error bound.
    #[error("latency sketch uses gamma {found}, expected {expected} (relative accuracy 1%)")]
    IncompatibleMapping {
        /// Gamma this crate uses.
        expected: f64,
        /// Gamma found in the bytes.
        found: f64,
    },
    /// Two sketches built with different mappings (cannot happen between sketches of this
    /// crate: [`LatencySketch::from_bytes`](crate::LatencySketch::from_bytes) rejects others).
    #[error("cannot merge latency sketches with different mappings")]
    MergeMismatch,
}

/// A checkpoint that cannot be written or restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Serialising the state failed (a bug, not bad input).
    #[error("cannot encode aggregator snapshot: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not an aggregator snapshot (or are corrupt).
    #[error("cannot decode aggregator snapshot: {0}")]
    Decode(#[source] serde_json::Error),
    /// A snapshot written by a newer or older, incompatible format.
    #[error("unsupported aggregator snapshot version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the snapshot.
        found: u32,
        /// Version this build writes and reads.
        supported: u32,
    },
    /// The snapshot's windows were cut with other sizes than the configuration now asks for.
    #[error(
        "snapshot windows (tumbling {snapshot_tumbling_ms} ms, hopping {snapshot_hopping:?}) do \
         not match the configuration (tumbling {config_tumbling_ms} ms, hopping {config_hopping:?})"
    )]
    GeometryMismatch {
        /// Tumbling size in the snapshot.
        snapshot_tumbling_ms: i64,
        /// Hopping (size, hop) in the snapshot.
        snapshot_hopping: Option<(i64, i64)>,
        /// Tumbling size configured now.
        config_tumbling_ms: i64,
        /// Hopping (size, hop) configured now.
        config_hopping: Option<(i64, i64)>,
    },
    /// The snapshot's set of seen call ids does not decode.
    #[error("corrupt seen-id set in aggregator snapshot: {0}")]
    Corrupt(String),
    /// The configuration given to restore is itself invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}
