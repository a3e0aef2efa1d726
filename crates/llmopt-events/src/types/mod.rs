//! Rust types of the event contracts, one module per `schemas/*.avsc` file.
//!
//! Field names equal the Avro field names so one serde derive serves Avro and JSON. Maps are
//! `BTreeMap` so that encoding is byte-for-byte deterministic, which replay relies on.

mod alert;
mod anomaly;
mod artifact;
mod config_change;
mod dead_letter;
mod decision;
mod llm_call;
mod quantization_failed;
mod quantization_job;
mod window_aggregate;

pub use alert::{Alert, AlertStatus, Severity};
pub use anomaly::{Anomaly, Direction};
pub use artifact::ArtifactPublished;
pub use config_change::{ChangeKind, ConfigChange, RouteTarget};
pub use dead_letter::{DeadLetter, Header};
pub use decision::{Decision, DecisionMode, DecisionState, Evidence, Strategy};
pub use llm_call::{CallStatus, LlmCall};
pub use quantization_failed::{QuantFailureReason, QuantizationFailed};
pub use quantization_job::{QuantMethod, QuantizationJob};
pub use window_aggregate::{WindowAggregate, WindowKind};

macro_rules! bind_contract {
    ($ty:ty => $contract:ident) => {
        impl $crate::EventType for $ty {
            const CONTRACT: $crate::Contract = $crate::Contract::$contract;
        }
    };
}
pub(crate) use bind_contract;
