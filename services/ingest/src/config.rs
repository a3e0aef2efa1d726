use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::otlp_receiver::OtlpReceiverConfig;
use crate::PriceTable;

/// Ingest settings (`[ingest]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// How long a CloudEvent `source`+`id` is remembered to drop redeliveries (ms).
    pub dedup_horizon_ms: u64,
    /// Prices for calls that arrive without a cost.
    pub prices: PriceTable,
    /// Model aliases mapped to one canonical name (e.g. dated snapshots to the model family),
    /// keyed by `provider/model`.
    pub model_aliases: BTreeMap<String, String>,
    /// Upper bound on a plausible latency; larger values are refused as unit errors (ms).
    pub max_latency_ms: f64,
    /// The OTLP/HTTP trace receiver (off unless `listen` is set).
    pub otlp: OtlpReceiverConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            dedup_horizon_ms: 3_600_000,
            prices: PriceTable::default(),
            model_aliases: BTreeMap::new(),
            max_latency_ms: 3_600_000.0,
            otlp: OtlpReceiverConfig::default(),
        }
    }
}
