use serde::{Deserialize, Serialize};

use super::bind_contract;

/// A request to quantize a self-hosted model (`schemas/quantization_job.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationJob {
    pub job_id: String,
    pub event_time: i64,
    pub model_name: String,
    pub model_location: String,
    pub method: QuantMethod,
    pub bits: i32,
    #[serde(default)]
    pub group_size: Option<i32>,
    #[serde(default)]
    pub symmetric: bool,
    #[serde(default)]
    pub act_order: bool,
    #[serde(default)]
    pub calibration_set: Option<String>,
    #[serde(default)]
    pub decision_id: Option<String>,
}

/// Weight quantization method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuantMethod {
    /// Round to nearest.
    #[serde(rename = "RTN")]
    Rtn,
    /// GPTQ (Frantar et al. 2022).
    #[serde(rename = "GPTQ")]
    Gptq,
}

bind_contract!(QuantizationJob => QuantizationJob);
