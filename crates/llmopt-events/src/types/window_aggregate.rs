use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bind_contract;

/// Metrics of one event-time window for one (app, route, provider, model) key
/// (`schemas/window_aggregate.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAggregate {
    pub id: String,
    pub window_id: String,
    #[serde(default)]
    pub revision: i32,
    pub window_kind: WindowKind,
    pub window_start: i64,
    pub window_end: i64,
    pub app: String,
    pub route: String,
    pub provider: String,
    pub model: String,
    pub count: i64,
    pub error_count: i64,
    #[serde(default)]
    pub errors_by_type: BTreeMap<String, i64>,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    #[serde(default)]
    pub ttft_p95_ms: Option<f64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    #[serde(default)]
    pub quality_sum: f64,
    #[serde(default)]
    pub quality_count: i64,
    #[serde(default, with = "serde_bytes")]
    pub latency_sketch: Option<Vec<u8>>,
    pub watermark: i64,
    /// Part of `cost_usd` per tenant, for the calls that name one.
    #[serde(default)]
    pub cost_by_tenant: BTreeMap<String, f64>,
}

/// Window shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WindowKind {
    /// Fixed, non-overlapping windows.
    Tumbling,
    /// Fixed-size windows that advance by a smaller hop.
    Hopping,
}

bind_contract!(WindowAggregate => WindowAggregate);
