use serde::{Deserialize, Serialize};

use super::bind_contract;

/// One LLM call, as emitted by an application or gateway (`schemas/llm_call.avsc`).
///
/// JSON producers may use the OpenTelemetry attribute names (`gen_ai.provider.name`, ...)
/// instead of the underscore forms; both are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCall {
    /// When the call finished (ms since epoch, UTC); windows use this, never the wall clock.
    pub event_time: i64,
    /// Caller's request id.
    pub request_id: String,
    /// Application making the call.
    pub app: String,
    /// Route (use case) within the app.
    pub route: String,
    /// Tenant the call was made for.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `gen_ai.operation.name`.
    #[serde(default = "default_operation", alias = "gen_ai.operation.name")]
    pub gen_ai_operation_name: String,
    /// `gen_ai.provider.name`.
    #[serde(alias = "gen_ai.provider.name")]
    pub gen_ai_provider_name: String,
    /// `gen_ai.request.model`.
    #[serde(alias = "gen_ai.request.model")]
    pub gen_ai_request_model: String,
    /// `gen_ai.response.model`.
    #[serde(default, alias = "gen_ai.response.model")]
    pub gen_ai_response_model: Option<String>,
    /// `gen_ai.usage.input_tokens`.
    #[serde(default, alias = "gen_ai.usage.input_tokens")]
    pub gen_ai_usage_input_tokens: i64,
    /// `gen_ai.usage.output_tokens`.
    #[serde(default, alias = "gen_ai.usage.output_tokens")]
    pub gen_ai_usage_output_tokens: i64,
    /// Whole-call latency in milliseconds.
    pub latency_ms: f64,
    /// Time to first token in milliseconds, for streaming calls.
    #[serde(default)]
    pub time_to_first_token_ms: Option<f64>,
    /// Success or failure.
    #[serde(default)]
    pub status: CallStatus,
    /// `error.type`, set on failures.
    #[serde(default, alias = "error.type")]
    pub error_type: Option<String>,
    /// Cost in USD; `None` means ingest prices it.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Quality or feedback score in [0, 1].
    #[serde(default)]
    pub quality_score: Option<f64>,
    /// Routing config version that served the call.
    #[serde(default)]
    pub config_version: Option<i64>,
    /// `gen_ai.usage.cache_read.input_tokens`: input tokens read from the prompt cache.
    #[serde(default, alias = "gen_ai.usage.cache_read.input_tokens")]
    pub gen_ai_usage_cache_read_input_tokens: Option<i64>,
    /// `gen_ai.usage.reasoning.output_tokens`: output tokens spent on reasoning.
    #[serde(default, alias = "gen_ai.usage.reasoning.output_tokens")]
    pub gen_ai_usage_reasoning_output_tokens: Option<i64>,
    /// `gen_ai.request.max_tokens`.
    #[serde(default, alias = "gen_ai.request.max_tokens")]
    pub gen_ai_request_max_tokens: Option<i64>,
    /// `gen_ai.request.temperature`.
    #[serde(default, alias = "gen_ai.request.temperature")]
    pub gen_ai_request_temperature: Option<f64>,
    /// `gen_ai.response.finish_reasons`.
    #[serde(default, alias = "gen_ai.response.finish_reasons")]
    pub gen_ai_response_finish_reasons: Vec<String>,
}

fn default_operation() -> String {
    "chat".to_string()
}

/// Outcome of an LLM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CallStatus {
    /// The provider answered.
    #[default]
    #[serde(rename = "OK", alias = "ok")]
    Ok,
    /// The call failed; `error_type` says how.
    #[serde(rename = "ERROR", alias = "error")]
    Error,
}

bind_contract!(LlmCall => LlmCall);
