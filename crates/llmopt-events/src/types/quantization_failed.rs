use std::fmt;

use serde::{Deserialize, Serialize};

use super::bind_contract;
use super::QuantMethod;

/// A quantization job that produced no artifact, and why (`schemas/quantization_failed.avsc`).
///
/// Published instead of [`ArtifactPublished`](super::ArtifactPublished) so that whoever asked for
/// the job learns it will never complete, rather than waiting on an artifact that is not coming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationFailed {
    /// Deterministic event id derived from the job, so a replayed failure dedups.
    pub id: String,
    /// The [`QuantizationJob`](super::QuantizationJob) that failed.
    pub job_id: String,
    /// When the failure was detected (ms since epoch, UTC).
    pub event_time: i64,
    /// Model the job was for.
    pub model_name: String,
    /// Directory (or mounted volume path) the job read the model from.
    pub model_location: String,
    /// Machine-readable reason, for metrics and for deciding whether a retry can help.
    pub reason: QuantFailureReason,
    /// Human-readable reason naming the offending file or parameter.
    pub message: String,
    /// Method the job asked for, when the job could be read that far.
    #[serde(default)]
    pub method: Option<QuantMethod>,
    /// Bit width the job asked for, when known.
    #[serde(default)]
    pub bits: Option<i32>,
    /// Decision that requested the job, so the decision can be closed as failed.
    #[serde(default)]
    pub decision_id: Option<String>,
}

/// Why a quantization job failed. The Avro enum defaults to `INTERNAL`, so symbols added later
/// read as [`QuantFailureReason::Internal`] in consumers built before them. Variants are declared
/// in the schema's symbol order because apache-avro writes an enum by its variant index: add new
/// ones at the end, in both places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QuantFailureReason {
    /// The model directory or one of its weight files does not exist.
    #[serde(rename = "MODEL_NOT_FOUND")]
    ModelNotFound,
    /// The model's architecture or tensor layout is not one the quantizer handles.
    #[serde(rename = "UNSUPPORTED_ARCHITECTURE")]
    UnsupportedArchitecture,
    /// The job's parameters are invalid (e.g. an unsupported bit width or group size).
    #[serde(rename = "BAD_PARAMETERS")]
    BadParameters,
    /// The artifact store ran out of space while writing.
    #[serde(rename = "OUT_OF_DISK")]
    OutOfDisk,
    /// Reading the model or writing the artifact failed for another I/O reason.
    #[serde(rename = "IO_ERROR")]
    IoError,
    /// Anything else, including reasons this build does not know yet.
    #[serde(rename = "INTERNAL")]
    Internal,
}

impl QuantFailureReason {
    /// Short snake_case label, stable and low-cardinality so it can be a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantFailureReason::ModelNotFound => "model_not_found",
            QuantFailureReason::UnsupportedArchitecture => "unsupported_architecture",
            QuantFailureReason::BadParameters => "bad_parameters",
            QuantFailureReason::OutOfDisk => "out_of_disk",
            QuantFailureReason::IoError => "io_error",
            QuantFailureReason::Internal => "internal",
        }
    }
}

impl fmt::Display for QuantFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

bind_contract!(QuantizationFailed => QuantizationFailed);
