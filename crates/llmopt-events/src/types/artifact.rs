use serde::{Deserialize, Serialize};

use super::bind_contract;
use super::QuantMethod;

/// A quantized model artifact and its quality figures (`schemas/artifact_published.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactPublished {
    pub id: String,
    pub job_id: String,
    pub event_time: i64,
    pub model_name: String,
    pub location: String,
    pub manifest_sha256: String,
    pub method: QuantMethod,
    pub bits: i32,
    #[serde(default)]
    pub group_size: Option<i32>,
    pub bytes: i64,
    pub fp32_bytes: i64,
    pub compression_ratio: f64,
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub spearman: f64,
    pub mean_layer_error: f64,
}

bind_contract!(ArtifactPublished => ArtifactPublished);
