//! The `ingest` service: validates, normalises, deduplicates and prices raw LLM-call telemetry.
//!
//! The core ([`Ingest`]) is deterministic: validation and normalisation rules plus the price
//! table. Deduplication by CloudEvent `source` + `id` within a horizon needs shared state across
//! replicas, so it lives in the shell ([`DedupEffects`], a TTL set in the state store). Anything
//! refused is dead-lettered by the runner with the original bytes and the reason.

mod config;
mod core;
mod dedup;
pub mod otlp;
pub mod otlp_kafka;
pub mod otlp_receiver;
mod pricing;
mod validate;

pub use config::IngestConfig;
pub use core::Ingest;
pub use dedup::DedupEffects;
pub use otlp::{map_export, OtlpMapping};
pub use pricing::{ModelPrice, PriceTable};

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "ingest";
