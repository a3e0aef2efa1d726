use thiserror::Error;

/// Why a Kafka record is not an acceptable CloudEvent. Each variant names the offending
/// attribute, so dead-letter records and counters say exactly what the producer got wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CeError {
    /// The record is larger than the configured limit; checked before anything is parsed.
    #[error("message of {size} bytes exceeds the {limit}-byte limit")]
    Oversized { size: usize, limit: usize },
    /// A required context attribute (`id`, `source`, `specversion`, `type`) is absent.
    #[error("missing required CloudEvents attribute `{0}`")]
    MissingAttribute(&'static str),
    /// `specversion` is present but is not `1.0`.
    #[error("unsupported CloudEvents specversion `{0}` (only 1.0 is accepted)")]
    WrongSpecVersion(String),
    /// An attribute is present but its value breaks the spec (empty id, bad time, bad name, ...).
    #[error("invalid CloudEvents attribute `{name}`: {reason}")]
    InvalidAttribute { name: String, reason: String },
    /// A structured-mode payload is not a JSON object.
    #[error("structured-mode payload is not valid JSON: {0}")]
    NotJson(String),
    /// A header value is not UTF-8, so it cannot be an attribute value.
    #[error("header `{0}` is not valid UTF-8")]
    HeaderNotUtf8(String),
    /// Structured mode with an event format llmopt does not read (only JSON is supported).
    #[error("unsupported structured event format `{0}`")]
    UnsupportedFormat(String),
}

impl CeError {
    /// Short, stable, machine-readable reason: used as a metrics label and in dead-letter records.
    pub fn kind(&self) -> &'static str {
        match self {
            CeError::Oversized { .. } => "oversized",
            CeError::MissingAttribute(_) => "missing_attribute",
            CeError::WrongSpecVersion(_) => "wrong_specversion",
            CeError::InvalidAttribute { .. } => "invalid_attribute",
            CeError::NotJson(_) => "not_json",
            CeError::HeaderNotUtf8(_) => "header_not_utf8",
            CeError::UnsupportedFormat(_) => "unsupported_format",
        }
    }
}
