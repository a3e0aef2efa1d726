//! OpenTelemetry GenAI spans to [`LlmCall`]s: the one place where the GenAI semantic conventions
//! are read.
//!
//! An instrumented application (the official `opentelemetry-instrumentation-openai-v2`,
//! OpenLLMetry, vendor SDKs) creates one span per model call with `gen_ai.*` attributes; a
//! collector forwards them, over OTLP or through its Kafka exporter. [`map_export`] turns one
//! `ExportTraceServiceRequest` into calls, and sorts out the rest:
//!
//! - a span without GenAI attributes (HTTP, DB, ...) is counted and ignored: traces mix them;
//! - a GenAI span that cannot be a call (no model, no provider, ends before it starts, ...) is
//!   rejected with a typed [`SpanError`] and the span's own protobuf bytes, for the dead-letter
//!   topic;
//! - every other GenAI span is a call whose event id is derived from its trace and span ids, so
//!   an export sent twice deduplicates in ingest like any other event.
//!
//! Both the current attribute names and the deprecated ones still emitted by older
//! instrumentations are read (`gen_ai.provider.name` / `gen_ai.system`,
//! `gen_ai.usage.input_tokens` / `gen_ai.usage.prompt_tokens`, ...). App, route and tenant come
//! from span or resource attributes named in [`OtlpMapping`].

use llmopt_events::{CallStatus, LlmCall};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `error.type` when a span failed without naming why (the semantic conventions' fallback).
pub const OTHER_ERROR_TYPE: &str = "_OTHER";

/// Where app, route and tenant come from, and which span events mark the first streamed chunk.
/// For each list the first attribute present wins, looked up on the span, then on its resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpMapping {
    /// Attributes naming the application.
    pub app_attributes: Vec<String>,
    /// Attributes naming the route (use case) within the application.
    pub route_attributes: Vec<String>,
    /// The route of a span that names none.
    pub default_route: String,
    /// Attributes naming the tenant.
    pub tenant_attributes: Vec<String>,
    /// Names of span events recorded when the first chunk of a streamed answer arrived: the
    /// first such event gives the time to first token.
    pub first_chunk_events: Vec<String>,
}

impl Default for OtlpMapping {
    fn default() -> Self {
        Self {
            app_attributes: vec!["llmopt.app".into(), "service.name".into()],
            route_attributes: vec!["llmopt.route".into(), "gen_ai.agent.name".into()],
            default_route: "default".into(),
            tenant_attributes: vec!["llmopt.tenant".into(), "enduser.id".into()],
            first_chunk_events: vec![
                "gen_ai.content.completion.chunk".into(),
                "llm.content.completion.chunk".into(),
                "first_token".into(),
            ],
        }
    }
}

/// Why a GenAI span is not a call.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpanError {
    /// Neither `gen_ai.request.model` nor `gen_ai.response.model`.
    #[error("GenAI span names no model (gen_ai.request.model or gen_ai.response.model)")]
    NoModel,
    /// Neither `gen_ai.provider.name` nor `gen_ai.system`.
    #[error("GenAI span names no provider (gen_ai.provider.name or gen_ai.system)")]
    NoProvider,
    /// None of the app attributes is set on the span or its resource.
    #[error("no app: none of {0:?} is set on the span or its resource")]
    NoApp(Vec<String>),
    /// Trace or span id of the wrong length (or all zero).
    #[error("invalid trace id or span id")]
    BadIds,
    /// A start or end time of 0.
    #[error("span has no start or end time")]
    NoTimes,
    /// The span ends before it starts.
    #[error("span ends before it starts ({start_ns} > {end_ns})")]
    NegativeDuration {
        /// Start, ns since the epoch.
        start_ns: u64,
        /// End, ns since the epoch.
        end_ns: u64,
    },
    /// An attribute of the wrong type or out of range.
    #[error("attribute `{name}` = {found}: {expected}")]
    BadAttribute {
        /// The attribute.
        name: &'static str,
        /// What it held.
        found: String,
        /// What it must hold.
        expected: &'static str,
    },
}

impl SpanError {
    /// Low-cardinality reason for dead-letter records and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SpanError::NoModel => "otlp_no_model",
            SpanError::NoProvider => "otlp_no_provider",
            SpanError::NoApp(_) => "otlp_no_app",
            SpanError::BadIds => "otlp_bad_ids",
            SpanError::NoTimes => "otlp_no_times",
            SpanError::NegativeDuration { .. } => "otlp_negative_duration",
            SpanError::BadAttribute { .. } => "otlp_bad_attribute",
        }
    }
}

/// A GenAI span as a call.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedCall {
    /// Event id: `otel-{trace id}-{span id}` (hex), the same for every export of the span.
    pub event_id: String,
    /// W3C `traceparent` of the span, carried on the call's CloudEvent.
    pub traceparent: String,
    /// The call.
    pub call: LlmCall,
}

/// A GenAI span that is not a call, with what the dead-letter topic keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedSpan {
    /// Why.
    pub error: SpanError,
    /// The span, protobuf-encoded (the original bytes of a JSON export are not the span's).
    pub span: Vec<u8>,
    /// `{trace id}-{span id}` in hex, for logs.
    pub ids: String,
}

/// What one export held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappedExport {
    /// GenAI spans mapped to calls, in export order.
    pub calls: Vec<MappedCall>,
    /// Spans without GenAI attributes, ignored.
    pub ignored: u64,
    /// GenAI spans that are not calls.
    pub rejected: Vec<RejectedSpan>,
}

/// How an export body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`: OTLP's protobuf.
    Protobuf,
    /// `application/json`: OTLP's JSON mapping (hex ids, camelCase, 64-bit integers as strings).
    Json,
}

/// An export body that is not an `ExportTraceServiceRequest`.
#[derive(Debug, Error)]
pub enum OtlpDecodeError {
    /// Protobuf decoding failed.
    #[error("OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// JSON decoding failed.
    #[error("OTLP JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes an export body. JSON is the request envelope (`{"resourceSpans": [...]}`) or, as
/// some collectors' Kafka exporters write it, the bare array of resource spans.
pub fn decode_export(
    body: &[u8],
    encoding: OtlpEncoding,
) -> Result<ExportTraceServiceRequest, OtlpDecodeError> {
    Ok(match encoding {
        OtlpEncoding::Protobuf => ExportTraceServiceRequest::decode(body)?,
        OtlpEncoding::Json => {
            let starts_with_array = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'[');
            if starts_with_array {
                ExportTraceServiceRequest {
                    resource_spans: serde_json::from_slice(body)?,
                }
            } else {
                serde_json::from_slice(body)?
            }
        }
    })
}

/// Maps every span of `request`.
pub fn map_export(request: &ExportTraceServiceRequest, mapping: &OtlpMapping) -> MappedExport {
    let mut out = MappedExport::default();
    for resource_spans in &request.resource_spans {
        let resource: &[KeyValue] = resource_spans
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                match map_span(span, resource, mapping) {
                    Ok(Some(call)) => out.calls.push(call),
                    Ok(None) => out.ignored += 1,
                    Err(error) => out.rejected.push(RejectedSpan {
                        error,
                        span: span.encode_to_vec(),
                        ids: format!("{}-{}", hex(&span.trace_id), hex(&span.span_id)),
                    }),
                }
            }
        }
    }
    out
}

/// Whether a span is a GenAI span: it names an operation or a provider.
pub fn is_genai(span: &Span) -> bool {
    [
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
    ]
    .iter()
    .any(|k| attribute(&span.attributes, k).is_some())
}

/// One span: `Ok(None)` when it is not a GenAI span.
pub fn map_span(
    span: &Span,
    resource: &[KeyValue],
    mapping: &OtlpMapping,
) -> Result<Option<MappedCall>, SpanError> {
    if !is_genai(span) {
        return Ok(None);
    }
    let attrs = Attributes {
        span: &span.attributes,
        resource,
    };
    if span.trace_id.len() != 16
        || span.span_id.len() != 8
        || span.trace_id.iter().all(|b| *b == 0)
        || span.span_id.iter().all(|b| *b == 0)
    {
        return Err(SpanError::BadIds);
    }
    let (start_ns, end_ns) = (span.start_time_unix_nano, span.end_time_unix_nano);
    if start_ns == 0 || end_ns == 0 {
        return Err(SpanError::NoTimes);
    }
    if end_ns < start_ns {
        return Err(SpanError::NegativeDuration { start_ns, end_ns });
    }
    let provider = attrs
        .string_of(&["gen_ai.provider.name", "gen_ai.system"])
        .ok_or(SpanError::NoProvider)?;
    let request_model = attrs.string_of(&["gen_ai.request.model"]);
    let response_model = attrs.string_of(&["gen_ai.response.model"]);
    let Some(request_model) = request_model.clone().or_else(|| response_model.clone()) else {
        return Err(SpanError::NoModel);
    };
    let app = attrs
        .first_of(&mapping.app_attributes)
        .ok_or_else(|| SpanError::NoApp(mapping.app_attributes.clone()))?;
    let route = attrs
        .first_of(&mapping.route_attributes)
        .unwrap_or_else(|| mapping.default_route.clone());
    let tenant = attrs.first_of(&mapping.tenant_attributes);
    let failed_status = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    let error_type = attrs.string_of(&["error.type"]).map(exception_type_name);
    let failed = failed_status || error_type.is_some();
    let trace = hex(&span.trace_id);
    let span_id = hex(&span.span_id);
    let sampled = span.flags & 0x01 == 1 || span.flags == 0;
    let ttft = time_to_first_token(span, &attrs, mapping)?;
    let call = LlmCall {
        event_time: (end_ns / 1_000_000) as i64,
        request_id: format!("{trace}-{span_id}"),
        app,
        route,
        tenant,
        gen_ai_operation_name: attrs
            .string_of(&["gen_ai.operation.name"])
            .unwrap_or_else(|| "chat".into()),
        gen_ai_provider_name: provider,
        gen_ai_request_model: request_model,
        gen_ai_response_model: response_model,
        gen_ai_usage_input_tokens: attrs
            .count("gen_ai.usage.input_tokens", &["gen_ai.usage.prompt_tokens"])?
            .unwrap_or(0),
        gen_ai_usage_output_tokens: attrs
            .count(
                "gen_ai.usage.output_tokens",
                &["gen_ai.usage.completion_tokens"],
            )?
            .unwrap_or(0),
        latency_ms: (end_ns - start_ns) as f64 / 1e6,
        time_to_first_token_ms: ttft,
        status: if failed {
            CallStatus::Error
        } else {
            CallStatus::Ok
        },
        error_type: failed.then(|| error_type.unwrap_or_else(|| OTHER_ERROR_TYPE.into())),
        cost_usd: attrs.number("llmopt.cost_usd")?,
        quality_score: attrs.number("llmopt.quality_score")?,
        config_version: attrs.count("llmopt.config_version", &[])?,
        gen_ai_usage_cache_read_input_tokens: attrs.count(
            "gen_ai.usage.cache_read.input_tokens",
            &[
                "gen_ai.usage.cache_read_input_tokens",
                "gen_ai.usage.input_tokens.cached",
            ],
        )?,
        gen_ai_usage_reasoning_output_tokens: attrs.count(
            "gen_ai.usage.reasoning.output_tokens",
            &[
                "gen_ai.usage.output_tokens.reasoning",
                "gen_ai.usage.reasoning_tokens",
            ],
        )?,
        gen_ai_request_max_tokens: attrs.count("gen_ai.request.max_tokens", &[])?,
        gen_ai_request_temperature: attrs.number("gen_ai.request.temperature")?,
        gen_ai_response_finish_reasons: attrs.strings("gen_ai.response.finish_reasons"),
    };
    Ok(Some(MappedCall {
        event_id: format!("otel-{trace}-{span_id}"),
        traceparent: format!("00-{trace}-{span_id}-{:02x}", u8::from(sampled)),
        call,
    }))
}

/// Time to first token: an attribute (`llmopt.time_to_first_token_ms` in ms, or
/// `gen_ai.server.time_to_first_token` in seconds), else the first first-chunk event.
fn time_to_first_token(
    span: &Span,
    attrs: &Attributes<'_>,
    mapping: &OtlpMapping,
) -> Result<Option<f64>, SpanError> {
    if let Some(ms) = attrs.number("llmopt.time_to_first_token_ms")? {
        return Ok(Some(ms));
    }
    if let Some(s) = attrs.number("gen_ai.server.time_to_first_token")? {
        return Ok(Some(s * 1000.0));
    }
    Ok(span
        .events
        .iter()
        .filter(|e| mapping.first_chunk_events.contains(&e.name))
        .map(|e| e.time_unix_nano)
        .filter(|t| *t >= span.start_time_unix_nano)
        .min()
        .map(|t| (t - span.start_time_unix_nano) as f64 / 1e6))
}

/// `error.type` as the semantic conventions want it, a fully qualified type name: some Python
/// instrumentations set the exception class itself, which the SDK writes out as
/// `<class 'openai.InternalServerError'>`.
fn exception_type_name(raw: String) -> String {
    raw.strip_prefix("<class '")
        .and_then(|rest| rest.strip_suffix("'>"))
        .map_or(raw.clone(), str::to_string)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// A span's attributes with its resource's behind them.
struct Attributes<'a> {
    span: &'a [KeyValue],
    resource: &'a [KeyValue],
}

impl Attributes<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        attribute(self.span, key).or_else(|| attribute(self.resource, key))
    }

    /// The first of `keys` holding a non-empty string (numbers are written out).
    fn string_of(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match self.get(k)? {
            Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        })
    }

    fn first_of(&self, keys: &[String]) -> Option<String> {
        keys.iter().find_map(|k| self.string_of(&[k.as_str()]))
    }

    /// A non-negative integer under `key` or one of its deprecated `aliases`.
    fn count(&self, key: &'static str, aliases: &[&str]) -> Result<Option<i64>, SpanError> {
        let Some(value) = std::iter::once(key)
            .chain(aliases.iter().copied())
            .find_map(|k| self.get(k))
        else {
            return Ok(None);
        };
        let bad = |found: String| SpanError::BadAttribute {
            name: key,
            found,
            expected: "a non-negative integer",
        };
        let n = match value {
            Value::IntValue(i) => *i,
            Value::DoubleValue(d) if d.fract() == 0.0 && d.is_finite() => *d as i64,
            Value::StringValue(s) => s.trim().parse().map_err(|_| bad(format!("{s:?}")))?,
            other => return Err(bad(format!("{other:?}"))),
        };
        if n < 0 {
            return Err(bad(n.to_string()));
        }
        Ok(Some(n))
    }

    /// A finite number under `key`.
    fn number(&self, key: &'static str) -> Result<Option<f64>, SpanError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bad = |found: String| SpanError::BadAttribute {
            name: key,
            found,
            expected: "a finite number",
        };
        let x = match value {
            Value::DoubleValue(d) => *d,
            Value::IntValue(i) => *i as f64,
            Value::StringValue(s) => s.trim().parse().map_err(|_| bad(format!("{s:?}")))?,
            other => return Err(bad(format!("{other:?}"))),
        };
        if !x.is_finite() {
            return Err(bad(x.to_string()));
        }
        Ok(Some(x))
    }

    /// A string array (or a single string) under `key`.
    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::ArrayValue(a)) => a
                .values
                .iter()
                .filter_map(|v| match v.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            Some(Value::StringValue(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}
