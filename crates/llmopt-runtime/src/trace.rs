//! W3C trace context across the Kafka hop: the span of each processed input takes the
//! `traceparent` of the record as its parent, and the records it publishes carry the span's own
//! `traceparent`, so one telemetry event can be followed from ingest to the decision it caused.
//!
//! Spans are `tracing` spans with target [`TARGET`]; they become OpenTelemetry spans only when
//! the process installs the `tracing-opentelemetry` layer (an OTLP endpoint is configured).
//! Without it they are disabled and cost a branch, and records keep the incoming `traceparent`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Target of the runtime's per-record spans, for filters (`llmopt::trace=off`).
pub const TARGET: &str = "llmopt::trace";

/// Makes the remote span of `traceparent` the parent of `span` (a malformed header is ignored:
/// the span starts a new trace).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` of `span` itself, if it is recorded by OpenTelemetry.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}
