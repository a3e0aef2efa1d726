use std::collections::BTreeMap;

use crate::CeError;

/// The only CloudEvents version llmopt reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// A CloudEvents 1.0 event with its data kept as bytes.
///
/// Data stays opaque here so this crate knows nothing of llmopt's schemas: the media type in
/// `datacontenttype` tells the typed layer how to read it (`application/avro` or
/// `application/json`). Extensions are strings because that is how they travel in Kafka headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudEvent {
    /// Unique per `source`; with `source` it is the deduplication key.
    pub id: String,
    /// URI-reference naming the producer, e.g. `/apps/checkout` or `llmopt/aggregator`.
    pub source: String,
    /// Event type in reverse-DNS form, e.g. `io.llmopt.llm_call.v1`.
    pub ty: String,
    /// RFC 3339 timestamp, kept as sent so round trips are exact.
    pub time: Option<String>,
    /// Optional subject within the source.
    pub subject: Option<String>,
    /// Media type of `data`.
    pub datacontenttype: Option<String>,
    /// URI of the schema `data` adheres to.
    pub dataschema: Option<String>,
    /// Extension attributes such as `partitionkey` and `traceparent`.
    pub extensions: BTreeMap<String, String>,
    /// The payload, or `None` for an event without data.
    pub data: Option<Vec<u8>>,
}

impl CloudEvent {
    /// The W3C trace context carried with the event (distributed tracing extension).
    pub fn traceparent(&self) -> Option<&str> {
        self.extensions.get("traceparent").map(String::as_str)
    }

    /// The Kafka message key (partitioning extension).
    pub fn partitionkey(&self) -> Option<&str> {
        self.extensions.get("partitionkey").map(String::as_str)
    }

    /// Checks the rules the spec puts on attribute values; decoders call it so that a producer's
    /// mistake is reported as the attribute it concerns.
    pub fn validate(&self) -> Result<(), CeError> {
        if self.id.is_empty() {
            return Err(invalid("id", "must be a non-empty string"));
        }
        if self.source.is_empty() {
            return Err(invalid("source", "must be a non-empty URI-reference"));
        }
        if self.ty.is_empty() {
            return Err(invalid("type", "must be a non-empty string"));
        }
        let optional = [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("time", &self.time),
        ];
        for (name, value) in optional {
            if value.as_deref() == Some("") {
                return Err(invalid(name, "must not be empty when present"));
            }
        }
        if let Some(time) = &self.time {
            chrono::DateTime::parse_from_rfc3339(time)
                .map_err(|e| invalid("time", &format!("`{time}` is not RFC 3339: {e}")))?;
        }
        for name in self.extensions.keys() {
            validate_attribute_name(name)?;
        }
        Ok(())
    }
}

/// Attribute names are lower-case ASCII letters and digits (spec section "Attribute Naming
/// Convention"); anything else cannot be mapped to a `ce_` header without loss.
pub(crate) fn validate_attribute_name(name: &str) -> Result<(), CeError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            name,
            "attribute names must be lower-case ASCII letters and digits",
        ))
    }
}

pub(crate) fn invalid(name: &str, reason: &str) -> CeError {
    CeError::InvalidAttribute {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}
