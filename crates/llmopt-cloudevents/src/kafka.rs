//! The CloudEvents Kafka protocol binding (spec: `kafka-protocol-binding.md`, version 1.0).

use crate::event::{invalid, validate_attribute_name};
use crate::{structured, CeError, CloudEvent, SPEC_VERSION};

/// Kafka header that carries the data's media type in binary mode and the event format in
/// structured mode.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Media type of structured-mode JSON events.
pub const STRUCTURED_JSON_CONTENT_TYPE: &str = "application/cloudevents+json";
const CE_PREFIX: &str = "ce_";

/// A Kafka record as the binding sees it, independent of the Kafka client in use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaMessage {
    /// Message key; the `partitionkey` extension.
    pub key: Option<Vec<u8>>,
    /// Headers in order; Kafka allows repeated names and null values.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Message value.
    pub value: Option<Vec<u8>>,
}

impl KafkaMessage {
    /// Size as the broker counts it, near enough for a limit check: key, value and headers.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers
    }

    /// Last value of a header, matched case-insensitively as the binding requires.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The `source` and `id` of a binary-mode record, read from its headers alone (last value of
/// each, as [`decode`] reads them); `None` for structured mode or when either is missing or not
/// UTF-8. For a look at a record's identity before decoding it (ingest's batched deduplication);
/// the decoded event has the same two values.
pub fn binary_identity(headers: &[(String, Option<Vec<u8>>)]) -> Option<(&str, &str)> {
    let last = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    };
    let structured = last(CONTENT_TYPE_HEADER)
        .and_then(|ct| std::str::from_utf8(ct).ok())
        .is_some_and(|ct| media_type(ct).starts_with("application/cloudevents"));
    if structured || last("ce_specversion").is_none() {
        return None;
    }
    let source = std::str::from_utf8(last("ce_source")?).ok()?;
    let id = std::str::from_utf8(last("ce_id")?).ok()?;
    Some((source, id))
}

/// How an incoming record carried its event; reported so ingest can count both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// Attributes in `ce_*` headers, data in the value.
    Binary,
    /// The whole event as a JSON document in the value.
    Structured,
}

/// Limits applied before any parsing, so a hostile record costs nothing to reject.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted record (key + value + headers), in bytes.
    pub max_message_bytes: usize,
}

impl Default for DecodeLimits {
    /// Kafka's own default `message.max.bytes` (1 MiB).
    fn default() -> Self {
        Self {
            max_message_bytes: 1_048_576,
        }
    }
}

/// Writes an event in binary content mode, the mode llmopt uses for everything it produces:
/// consumers can route on headers without parsing the value, and Avro data stays compact.
pub fn to_binary(event: &CloudEvent) -> KafkaMessage {
    let mut headers = Vec::with_capacity(6 + event.extensions.len());
    let mut put = |name: &str, value: &str| {
        headers.push((name.to_string(), Some(value.as_bytes().to_vec())));
    };
    put("ce_specversion", SPEC_VERSION);
    put("ce_id", &event.id);
    put("ce_source", &event.source);
    put("ce_type", &event.ty);
    if let Some(v) = &event.time {
        put("ce_time", v);
    }
    if let Some(v) = &event.subject {
        put("ce_subject", v);
    }
    if let Some(v) = &event.dataschema {
        put("ce_dataschema", v);
    }
    if let Some(v) = &event.datacontenttype {
        put(CONTENT_TYPE_HEADER, v);
    }
    for (name, value) in &event.extensions {
        put(&format!("{CE_PREFIX}{name}"), value);
    }
    KafkaMessage {
        key: event.partitionkey().map(|k| k.as_bytes().to_vec()),
        headers,
        value: event.data.clone(),
    }
}

/// Writes an event in structured content mode (JSON event format). llmopt itself does not
/// produce this, but tools and tests use it to speak like third-party producers.
pub fn to_structured(event: &CloudEvent) -> KafkaMessage {
    KafkaMessage {
        key: event.partitionkey().map(|k| k.as_bytes().to_vec()),
        headers: vec![(
            CONTENT_TYPE_HEADER.to_string(),
            Some(STRUCTURED_JSON_CONTENT_TYPE.as_bytes().to_vec()),
        )],
        value: Some(structured::encode_json(event)),
    }
}

/// Reads a CloudEvent from a Kafka record in either content mode.
///
/// The mode is told by the `content-type` header as the binding specifies. A record with no
/// `ce_specversion` header and no content type is tried as structured JSON, which is what
/// hand-rolled producers usually send; if it is not JSON the error says so.
pub fn decode(
    message: &KafkaMessage,
    limits: &DecodeLimits,
) -> Result<(CloudEvent, ContentMode), CeError> {
    let size = message.size();
    if size > limits.max_message_bytes {
        return Err(CeError::Oversized {
            size,
            limit: limits.max_message_bytes,
        });
    }
    let content_type = match message.header(CONTENT_TYPE_HEADER) {
        Some(raw) => Some(
            std::str::from_utf8(raw)
                .map_err(|_| CeError::HeaderNotUtf8(CONTENT_TYPE_HEADER.to_string()))?,
        ),
        None => None,
    };
    let mut event = match content_type {
        Some(ct) if media_type(ct).starts_with("application/cloudevents") => {
            if media_type(ct) != STRUCTURED_JSON_CONTENT_TYPE {
                return Err(CeError::UnsupportedFormat(ct.to_string()));
            }
            (decode_structured(message)?, ContentMode::Structured)
        }
        None if message.header("ce_specversion").is_none() => {
            (decode_structured(message)?, ContentMode::Structured)
        }
        _ => (decode_binary(message, content_type)?, ContentMode::Binary),
    };
    if let Some(key) = &message.key {
        if let Ok(key) = std::str::from_utf8(key) {
            event.0.extensions.insert("partitionkey".into(), key.into());
        }
    }
    event.0.validate()?;
    Ok(event)
}

fn decode_structured(message: &KafkaMessage) -> Result<CloudEvent, CeError> {
    let value = message.value.as_deref().unwrap_or_default();
    structured::decode_json(value)
}

fn decode_binary(
    message: &KafkaMessage,
    content_type: Option<&str>,
) -> Result<CloudEvent, CeError> {
    let mut event = CloudEvent {
        datacontenttype: content_type.map(str::to_string),
        // An empty value is an event without data, as the SDKs read it.
        data: message.value.clone().filter(|v| !v.is_empty()),
        ..CloudEvent::default()
    };
    let mut specversion = None;
    let (mut id, mut source, mut ty) = (None, None, None);
    for (name, value) in &message.headers {
        let lower = name.to_ascii_lowercase();
        let Some(attr) = lower.strip_prefix(CE_PREFIX) else {
            continue;
        };
        let Some(value) = value else {
            return Err(invalid(attr, "header has a null value"));
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| CeError::HeaderNotUtf8(name.clone()))?
            .to_string();
        match attr {
            "specversion" => specversion = Some(value),
            "id" => id = Some(value),
            "source" => source = Some(value),
            "type" => ty = Some(value),
            "time" => event.time = Some(value),
            "subject" => event.subject = Some(value),
            "dataschema" => event.dataschema = Some(value),
            "datacontenttype" => {
                return Err(invalid(
                    "datacontenttype",
                    "binary mode carries it in the `content-type` header, not `ce_datacontenttype`",
                ))
            }
            ext => {
                validate_attribute_name(ext)?;
                event.extensions.insert(ext.to_string(), value);
            }
        }
    }
    match specversion {
        None => return Err(CeError::MissingAttribute("specversion")),
        Some(v) if v != SPEC_VERSION => return Err(CeError::WrongSpecVersion(v)),
        Some(_) => {}
    }
    event.id = id.ok_or(CeError::MissingAttribute("id"))?;
    event.source = source.ok_or(CeError::MissingAttribute("source"))?;
    event.ty = ty.ok_or(CeError::MissingAttribute("type"))?;
    Ok(event)
}

/// The media type without parameters, lower-cased: `Application/JSON; charset=utf-8` → `application/json`.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CloudEvent {
        CloudEvent {
            id: "e-1".into(),
            source: "/gateway".into(),
            ty: "dev.llmopt.llm.call".into(),
            ..CloudEvent::default()
        }
    }

    #[test]
    fn binary_identity_agrees_with_decode() {
        let mut message = to_binary(&event());
        // A repeated header: the last value counts, as in decode.
        message
            .headers
            .push(("CE_ID".into(), Some(b"e-2".to_vec())));
        let (decoded, _) = decode(&message, &DecodeLimits::default()).expect("decode");
        assert_eq!(
            binary_identity(&message.headers),
            Some((decoded.source.as_str(), decoded.id.as_str()))
        );
        assert_eq!(decoded.id, "e-2");
    }

    #[test]
    fn binary_identity_is_none_for_structured_or_incomplete_records() {
        assert_eq!(binary_identity(&to_structured(&event()).headers), None);
        let mut message = to_binary(&event());
        message.headers.retain(|(k, _)| k != "ce_source");
        assert_eq!(binary_identity(&message.headers), None);
        let mut message = to_binary(&event());
        message.headers.retain(|(k, _)| k != "ce_specversion");
        assert_eq!(binary_identity(&message.headers), None);
    }
}
