//! Events on the wire: llmopt event types inside CloudEvents inside Kafka records.

use llmopt_cloudevents::{CeError, CloudEvent, ContentMode, DecodeLimits, KafkaMessage};
use thiserror::Error;

use crate::codec::{self, CodecError};
use crate::{
    Alert, Anomaly, ArtifactPublished, ConfigChange, Contract, DeadLetter, Decision, EventType,
    LlmCall, QuantizationFailed, QuantizationJob, SchemaRegistry, WindowAggregate,
};

/// Media type of Avro single-object encoded data.
pub const AVRO_MEDIA_TYPE: &str = "application/avro";
/// Media type of JSON data.
pub const JSON_MEDIA_TYPE: &str = "application/json";

/// How the event's data is encoded inside the CloudEvent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Compact and schema-checked: the default between llmopt services.
    Avro,
    /// Readable by any consumer: used for the operator-facing alert topic.
    Json,
}

/// The CloudEvents attributes llmopt sets on what it writes. Ids are chosen by the caller, and
/// are deterministic in the service cores, so replay reproduces them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// CloudEvents `id`.
    pub id: String,
    /// CloudEvents `source`, e.g. `llmopt/aggregator`.
    pub source: String,
    /// Event time (ms since epoch); becomes the CloudEvents `time`.
    pub time_ms: Option<i64>,
    /// Kafka message key (the `partitionkey` extension).
    pub partition_key: Option<String>,
    /// W3C trace context, carried from input to output.
    pub traceparent: Option<String>,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
}

/// Why a record is not an acceptable llmopt event.
#[derive(Debug, Error)]
pub enum WireError {
    /// The record is not a valid CloudEvent.
    #[error(transparent)]
    Envelope(#[from] CeError),
    /// The CloudEvents `type` is not one of llmopt's contracts.
    #[error("unknown CloudEvents type `{0}`")]
    UnknownType(String),
    /// A valid llmopt type, but not the one this consumer reads.
    #[error("expected CloudEvents type `{expected}`, got `{found}`")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// The event carries no data.
    #[error("event `{0}` has no data")]
    MissingData(String),
    /// The data's media type is neither Avro nor JSON.
    #[error("unsupported datacontenttype `{0}` (expected application/avro or application/json)")]
    UnsupportedContentType(String),
    /// The data does not match the contract's schema.
    #[error(transparent)]
    Data(#[from] CodecError),
}

impl WireError {
    /// Short machine-readable reason: metrics label and dead-letter `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Envelope(e) => e.kind(),
            WireError::UnknownType(_) => "unknown_type",
            WireError::WrongType { .. } => "wrong_type",
            WireError::MissingData(_) => "missing_data",
            WireError::UnsupportedContentType(_) => "unsupported_content_type",
            WireError::Data(e) => e.kind(),
        }
    }
}

/// Wraps an event in a CloudEvent with its data encoded as asked.
pub fn to_cloudevent<T: EventType>(
    event: &T,
    meta: &EventMeta,
    format: DataFormat,
) -> Result<CloudEvent, CodecError> {
    let contract = T::CONTRACT;
    let (data, media_type) = match format {
        DataFormat::Avro => (codec::encode_avro(event)?, AVRO_MEDIA_TYPE),
        DataFormat::Json => (codec::encode_json(event)?, JSON_MEDIA_TYPE),
    };
    let mut ce = CloudEvent {
        id: meta.id.clone(),
        source: meta.source.clone(),
        ty: contract.ce_type().to_string(),
        time: meta.time_ms.and_then(format_time),
        subject: meta.subject.clone(),
        datacontenttype: Some(media_type.to_string()),
        dataschema: Some(format!("urn:llmopt:schema:{}", contract.full_name())),
        ..CloudEvent::default()
    };
    if let Some(key) = &meta.partition_key {
        ce.extensions.insert("partitionkey".into(), key.clone());
    }
    if let Some(tp) = &meta.traceparent {
        ce.extensions.insert("traceparent".into(), tp.clone());
    }
    ce.data = Some(data);
    Ok(ce)
}

/// Encodes an event straight to a Kafka record in binary content mode.
pub fn to_kafka<T: EventType>(
    event: &T,
    meta: &EventMeta,
    format: DataFormat,
) -> Result<KafkaMessage, CodecError> {
    Ok(llmopt_cloudevents::to_binary(&to_cloudevent(
        event, meta, format,
    )?))
}

/// Reads the data of a CloudEvent as the contract type `T`.
pub fn from_cloudevent<T: EventType>(
    ce: &CloudEvent,
    registry: &SchemaRegistry,
) -> Result<T, WireError> {
    let expected = T::CONTRACT.ce_type();
    if ce.ty != expected {
        return Err(match Contract::from_ce_type(&ce.ty) {
            Some(_) => WireError::WrongType {
                expected,
                found: ce.ty.clone(),
            },
            None => WireError::UnknownType(ce.ty.clone()),
        });
    }
    let data = ce
        .data
        .as_deref()
        .ok_or_else(|| WireError::MissingData(ce.id.clone()))?;
    let media = ce.datacontenttype.as_deref().map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media.as_deref() {
        Some(AVRO_MEDIA_TYPE) | Some("avro/binary") => Ok(codec::decode_avro(data, registry)?),
        None | Some(JSON_MEDIA_TYPE) | Some("text/json") => Ok(codec::decode_json(data)?),
        Some(json) if json.ends_with("+json") => Ok(codec::decode_json(data)?),
        Some(other) => Err(WireError::UnsupportedContentType(other.to_string())),
    }
}

/// Any llmopt event, for consumers that read more than one contract from a topic.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    LlmCall(LlmCall),
    WindowAggregate(WindowAggregate),
    Anomaly(Anomaly),
    Alert(Alert),
    Decision(Decision),
    ConfigChange(ConfigChange),
    QuantizationJob(QuantizationJob),
    ArtifactPublished(ArtifactPublished),
    QuantizationFailed(QuantizationFailed),
    DeadLetter(DeadLetter),
}

impl AnyEvent {
    /// Decodes a CloudEvent of any llmopt type, dispatching on its `type` attribute.
    pub fn from_cloudevent(ce: &CloudEvent, registry: &SchemaRegistry) -> Result<Self, WireError> {
        let contract =
            Contract::from_ce_type(&ce.ty).ok_or_else(|| WireError::UnknownType(ce.ty.clone()))?;
        Ok(match contract {
            Contract::LlmCall => AnyEvent::LlmCall(from_cloudevent(ce, registry)?),
            Contract::WindowAggregate => AnyEvent::WindowAggregate(from_cloudevent(ce, registry)?),
            Contract::Anomaly => AnyEvent::Anomaly(from_cloudevent(ce, registry)?),
            Contract::Alert => AnyEvent::Alert(from_cloudevent(ce, registry)?),
            Contract::Decision => AnyEvent::Decision(from_cloudevent(ce, registry)?),
            Contract::ConfigChange => AnyEvent::ConfigChange(from_cloudevent(ce, registry)?),
            Contract::QuantizationJob => AnyEvent::QuantizationJob(from_cloudevent(ce, registry)?),
            Contract::ArtifactPublished => {
                AnyEvent::ArtifactPublished(from_cloudevent(ce, registry)?)
            }
            Contract::QuantizationFailed => {
                AnyEvent::QuantizationFailed(from_cloudevent(ce, registry)?)
            }
            Contract::DeadLetter => AnyEvent::DeadLetter(from_cloudevent(ce, registry)?),
        })
    }
}

/// Decodes a Kafka record all the way: envelope (either content mode), type and data.
pub fn decode_kafka<T: EventType>(
    message: &KafkaMessage,
    limits: &DecodeLimits,
    registry: &SchemaRegistry,
) -> Result<(CloudEvent, ContentMode, T), WireError> {
    let (ce, mode) = llmopt_cloudevents::decode(message, limits)?;
    let event = from_cloudevent(&ce, registry)?;
    Ok((ce, mode, event))
}

/// RFC 3339 with milliseconds and `Z`, the form most CloudEvents SDKs write.
fn format_time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl AnyEvent {
    /// The contract of the event inside.
    pub fn contract(&self) -> Contract {
        match self {
            AnyEvent::LlmCall(_) => Contract::LlmCall,
            AnyEvent::WindowAggregate(_) => Contract::WindowAggregate,
            AnyEvent::Anomaly(_) => Contract::Anomaly,
            AnyEvent::Alert(_) => Contract::Alert,
            AnyEvent::Decision(_) => Contract::Decision,
            AnyEvent::ConfigChange(_) => Contract::ConfigChange,
            AnyEvent::QuantizationJob(_) => Contract::QuantizationJob,
            AnyEvent::ArtifactPublished(_) => Contract::ArtifactPublished,
            AnyEvent::QuantizationFailed(_) => Contract::QuantizationFailed,
            AnyEvent::DeadLetter(_) => Contract::DeadLetter,
        }
    }

    /// Wraps the event in a CloudEvent, like [`to_cloudevent`] for a known type.
    pub fn to_cloudevent(
        &self,
        meta: &EventMeta,
        format: DataFormat,
    ) -> Result<CloudEvent, CodecError> {
        match self {
            AnyEvent::LlmCall(e) => to_cloudevent(e, meta, format),
            AnyEvent::WindowAggregate(e) => to_cloudevent(e, meta, format),
            AnyEvent::Anomaly(e) => to_cloudevent(e, meta, format),
            AnyEvent::Alert(e) => to_cloudevent(e, meta, format),
            AnyEvent::Decision(e) => to_cloudevent(e, meta, format),
            AnyEvent::ConfigChange(e) => to_cloudevent(e, meta, format),
            AnyEvent::QuantizationJob(e) => to_cloudevent(e, meta, format),
            AnyEvent::ArtifactPublished(e) => to_cloudevent(e, meta, format),
            AnyEvent::QuantizationFailed(e) => to_cloudevent(e, meta, format),
            AnyEvent::DeadLetter(e) => to_cloudevent(e, meta, format),
        }
    }
}
