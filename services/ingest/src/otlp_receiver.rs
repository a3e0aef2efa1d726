//! The ingest service's OTLP/HTTP trace receiver: `POST /v1/traces`, so that an application
//! instrumented with OpenTelemetry (or a collector) exports its GenAI spans straight to llmopt.
//!
//! Protobuf (`application/x-protobuf`) and JSON (`application/json`) bodies, optionally gzipped,
//! up to `max_body_bytes` (before and after decompression); an optional bearer token. The calls
//! of an export are written to `telemetry.raw` as CloudEvents (id from trace + span id, the span's
//! `traceparent`), so the rest of the pipeline is unchanged and ingest deduplicates a re-sent
//! export; GenAI spans that are not calls go to the dead-letter topic with their bytes. The client
//! gets its answer only after the broker acknowledged every record: 200 with OTLP's partial
//! success (the rejected spans and why) or, when Kafka refused, 503 so that the exporter retries.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::DeadLetter;
use llmopt_transport::{OutboundMessage, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prometheus::{IntCounterVec, Opts, Registry};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::otlp::{decode_export, map_export, MappedCall, MappedExport, OtlpEncoding, OtlpMapping};
use crate::otlp_kafka::CollectorTopic;

/// `[ingest.otlp]`: the receiver is off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Address of the OTLP/HTTP receiver (OTLP's default port is 4318), e.g. `0.0.0.0:4318`.
    pub listen: Option<String>,
    /// Largest body accepted, compressed and decompressed (bytes).
    pub max_body_bytes: usize,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Where app, route and tenant come from.
    pub mapping: OtlpMapping,
    /// Topics a collector's Kafka exporter writes traces to, read as well (none by default).
    pub kafka_topics: Vec<CollectorTopic>,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: 4 * 1024 * 1024,
            bearer_token: None,
            mapping: OtlpMapping::default(),
            kafka_topics: Vec::new(),
        }
    }
}

/// The OTLP counters, shared by the HTTP receiver and the collector-topic bridge.
#[derive(Clone)]
pub struct OtlpCounters {
    /// `llmopt_otlp_spans_total{outcome}`: accepted (GenAI calls), ignored (not GenAI),
    /// rejected (dead-lettered spans), undecodable (dead-lettered collector records).
    pub spans: IntCounterVec,
    /// `llmopt_otlp_requests_total{code}`: HTTP export requests by status.
    pub requests: IntCounterVec,
}

impl OtlpCounters {
    /// Creates the counters and registers them on `registry` (whose `llmopt` namespace makes
    /// them `llmopt_otlp_*`).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let spans = IntCounterVec::new(
            Opts::new(
                "otlp_spans_total",
                "OTLP spans received: accepted (GenAI calls), ignored (not GenAI), rejected \
                 (dead-lettered); undecodable collector records",
            ),
            &["outcome"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new("otlp_requests_total", "OTLP export requests by HTTP status"),
            &["code"],
        )?;
        registry.register(Box::new(spans.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Self { spans, requests })
    }
}

/// The receiver's state: where accepted calls and rejected spans go, and its counters.
pub struct OtlpReceiver {
    transport: Arc<dyn Transport>,
    raw_topic: String,
    dead_letter_topic: String,
    config: OtlpReceiverConfig,
    spans: IntCounterVec,
    requests: IntCounterVec,
}

impl OtlpReceiver {
    /// A receiver writing to `raw_topic` and `dead_letter_topic`.
    pub fn new(
        transport: Arc<dyn Transport>,
        raw_topic: String,
        dead_letter_topic: String,
        config: OtlpReceiverConfig,
        counters: &OtlpCounters,
    ) -> Self {
        Self {
            transport,
            raw_topic,
            dead_letter_topic,
            config,
            spans: counters.spans.clone(),
            requests: counters.requests.clone(),
        }
    }
}

/// Binds `addr` and serves `POST /v1/traces` in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, receiver: Arc<OtlpReceiver>) -> std::io::Result<SocketAddr> {
    let limit = receiver.config.max_body_bytes;
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "OTLP receiver stopped");
        }
    });
    tracing::info!(%bound, "OTLP/HTTP trace receiver listening on /v1/traces");
    Ok(bound)
}

async fn traces(State(r): State<Arc<OtlpReceiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let response = handle(&r, &headers, &body).await;
    r.requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn handle(r: &OtlpReceiver, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(token) = &r.config.bearer_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return plain(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let encoding = if content_type.starts_with("application/json") {
        OtlpEncoding::Json
    } else if content_type.starts_with("application/x-protobuf") {
        OtlpEncoding::Protobuf
    } else {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type `{content_type}`: application/x-protobuf or application/json"),
        );
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let unzipped;
    let body = if gzipped {
        let mut out = Vec::new();
        let limit = r.config.max_body_bytes as u64;
        let read = flate2::read::GzDecoder::new(body)
            .take(limit + 1)
            .read_to_end(&mut out);
        match read {
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("gzip: {e}")),
            Ok(n) if n as u64 > limit => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed body over {limit} bytes"),
                )
            }
            Ok(_) => {}
        }
        unzipped = out;
        unzipped.as_slice()
    } else {
        body
    };
    let request = match decode_export(body, encoding) {
        Ok(request) => request,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mapped = map_export(&request, &r.config.mapping);
    // Nothing is acknowledged to the client before the broker acknowledged it.
    match write_export(
        r.transport.as_ref(),
        &r.raw_topic,
        &r.dead_letter_topic,
        &mapped,
    )
    .await
    {
        Ok(()) => {}
        Err(WriteError::Encode(e)) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(WriteError::Transport(e)) => {
            tracing::warn!(error = %e, "OTLP export not written to Kafka; the client will retry");
            return plain(StatusCode::SERVICE_UNAVAILABLE, format!("not written: {e}"));
        }
    }
    count_spans(&r.spans, &mapped);
    let partial_success = (!mapped.rejected.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: mapped.rejected.len() as i64,
        error_message: mapped
            .rejected
            .iter()
            .map(|r| format!("{}: {}", r.ids, r.error))
            .collect::<Vec<_>>()
            .join("; "),
    });
    let answer = ExportTraceServiceResponse { partial_success };
    match encoding {
        OtlpEncoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            answer.encode_to_vec(),
        )
            .into_response(),
        OtlpEncoding::Json => match serde_json::to_vec(&answer) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

/// Adds an export's spans to `llmopt_otlp_spans_total{outcome}`.
pub(crate) fn count_spans(spans: &IntCounterVec, mapped: &MappedExport) {
    spans
        .with_label_values(&["accepted"])
        .inc_by(mapped.calls.len() as u64);
    spans.with_label_values(&["ignored"]).inc_by(mapped.ignored);
    spans
        .with_label_values(&["rejected"])
        .inc_by(mapped.rejected.len() as u64);
}

/// Why an export was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// A call or dead letter could not be encoded (a bug, not the client's).
    Encode(String),
    /// The broker did not acknowledge.
    Transport(llmopt_transport::TransportError),
}

/// Writes an export's calls to `raw_topic` as CloudEvents and its rejected spans to
/// `dead_letter_topic`, and resolves once the broker acknowledged all of them.
pub(crate) async fn write_export(
    transport: &dyn Transport,
    raw_topic: &str,
    dead_letter_topic: &str,
    mapped: &MappedExport,
) -> Result<(), WriteError> {
    let records = mapped
        .calls
        .iter()
        .map(|m| raw_record(m).map_err(|e| WriteError::Encode(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dead = Vec::with_capacity(mapped.rejected.len());
    for rejected in &mapped.rejected {
        tracing::warn!(span = %rejected.ids, reason = rejected.error.reason(),
            error = %rejected.error, "OTLP span dead-lettered");
        let record = dead_letter(
            format!("dlq/otlp/{}", rejected.ids),
            rejected.error.reason(),
            rejected.error.to_string(),
            "otlp:/v1/traces",
            rejected.span.clone(),
        );
        dead.push(encode_dead_letter(&record).map_err(WriteError::Encode)?);
    }
    futures::future::try_join(
        transport.publish_batch(raw_topic, records),
        transport.publish_batch(dead_letter_topic, dead),
    )
    .await
    .map_err(WriteError::Transport)?;
    Ok(())
}

/// The `telemetry.raw` record of a mapped call: an Avro CloudEvent with the span's event id,
/// source `/otlp/{app}`, key `{app}/{route}` and the span's `traceparent`.
pub fn raw_record(m: &MappedCall) -> Result<OutboundMessage, llmopt_events::CodecError> {
    let meta = EventMeta {
        id: m.event_id.clone(),
        source: format!("/otlp/{}", m.call.app),
        time_ms: Some(m.call.event_time),
        partition_key: Some(format!("{}/{}", m.call.app, m.call.route)),
        traceparent: Some(m.traceparent.clone()),
        subject: None,
    };
    wire::to_kafka(&m.call, &meta, DataFormat::Avro).map(OutboundMessage::from)
}

/// The dead-letter record of an OTLP span or record that is not a call.
pub(crate) fn dead_letter(
    id: String,
    kind: &str,
    message: String,
    source: &str,
    bytes: Vec<u8>,
) -> DeadLetter {
    DeadLetter {
        id,
        service: crate::SERVICE_NAME.to_string(),
        error_kind: kind.to_string(),
        error_message: message,
        source_topic: source.to_string(),
        source_partition: -1,
        source_offset: -1,
        source_timestamp: None,
        original_key: None,
        original_headers: Vec::new(),
        original_value: Some(bytes),
    }
}

pub(crate) fn encode_dead_letter(record: &DeadLetter) -> Result<OutboundMessage, String> {
    let meta = EventMeta {
        id: record.id.clone(),
        source: format!("llmopt/{}", crate::SERVICE_NAME),
        partition_key: Some(record.source_topic.clone()),
        ..EventMeta::default()
    };
    wire::to_kafka(record, &meta, DataFormat::Avro)
        .map(OutboundMessage::from)
        .map_err(|e| e.to_string())
}
