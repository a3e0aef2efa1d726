//! Avro (single-object encoding) and JSON encodings of event data.
//!
//! Avro data starts with the two marker bytes `C3 01` and the writer schema's 8-byte CRC-64-AVRO
//! fingerprint, then the datum. The reader looks the fingerprint up in its [`SchemaRegistry`] and
//! resolves writer against reader schema, which is what makes "add fields with defaults" a safe
//! evolution: old data read by new code gets the defaults.

use apache_avro::Schema;
use serde::Serialize;
use thiserror::Error;

use crate::{EventType, SchemaRegistry};

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// Why event data could not be encoded or decoded. Each variant says which contract was expected
/// and what did not fit, so a dead-letter record explains itself.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The bytes do not begin with the Avro single-object marker.
    #[error("data is not Avro single-object encoded (missing C3 01 marker)")]
    NotSingleObject,
    /// The writer schema's fingerprint is not one this reader knows.
    #[error("Avro data written with an unknown schema (fingerprint {0})")]
    UnknownSchema(String),
    /// The writer schema is known but cannot be resolved into the contract's schema.
    #[error("Avro data for {contract} cannot be read: {reason}")]
    AvroMismatch { contract: String, reason: String },
    /// JSON data that does not match the contract (missing field, wrong type, ...).
    #[error("JSON data does not match {contract}: {reason}")]
    JsonMismatch { contract: String, reason: String },
    /// The value cannot be written with the schema (a bug in the producer, not bad input).
    #[error("cannot encode {contract}: {reason}")]
    Encode { contract: String, reason: String },
}

impl CodecError {
    /// Short machine-readable reason for metrics and dead-letter records.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::NotSingleObject => "not_avro",
            CodecError::UnknownSchema(_) => "unknown_schema",
            CodecError::AvroMismatch { .. } | CodecError::JsonMismatch { .. } => "bad_data",
            CodecError::Encode { .. } => "encode",
        }
    }
}

/// Encodes an event as Avro single-object data with its contract's schema.
pub fn encode_avro<T: EventType>(event: &T) -> Result<Vec<u8>, CodecError> {
    let contract = T::CONTRACT;
    write_single_object(contract.schema(), &contract.fingerprint(), event).map_err(|reason| {
        CodecError::Encode {
            contract: contract.full_name(),
            reason,
        }
    })
}

/// Encodes any serialisable value with an explicit writer schema. Tests use it to play an older
/// producer; the error is the encoder's message.
pub fn encode_avro_with<S: Serialize>(schema: &Schema, value: &S) -> Result<Vec<u8>, String> {
    write_single_object(schema, &crate::contract::fingerprint(schema), value)
}

/// Marker, fingerprint (computed once per contract, not per event), datum.
fn write_single_object<S: Serialize>(
    schema: &Schema,
    fingerprint: &[u8; 8],
    value: &S,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(fingerprint);
    apache_avro::write_avro_datum_ref(schema, value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes Avro single-object data into the contract type, resolving the writer schema named by
/// the fingerprint against the contract's current schema.
pub fn decode_avro<T: EventType>(bytes: &[u8], registry: &SchemaRegistry) -> Result<T, CodecError> {
    let contract = T::CONTRACT;
    if bytes.len() < HEADER_LEN || bytes[..2] != MARKER {
        return Err(CodecError::NotSingleObject);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    let writer = registry
        .writer(&fp)
        .ok_or_else(|| CodecError::UnknownSchema(hex(&fp)))?;
    let mismatch = |reason: String| CodecError::AvroMismatch {
        contract: contract.full_name(),
        reason,
    };
    // Same schema on both sides (the common case): read with the contract's own reader, whose
    // names are resolved once; otherwise resolve the writer's data into the contract's schema.
    let (value, body) = if fp == contract.fingerprint() {
        let mut data = bytes;
        let value = contract
            .same_schema_reader()
            .read_value(&mut data)
            .map_err(|e| mismatch(e.to_string()))?;
        (value, data)
    } else {
        let mut body = &bytes[HEADER_LEN..];
        let value = apache_avro::from_avro_datum(writer, &mut body, Some(contract.schema()))
            .map_err(|e| mismatch(e.to_string()))?;
        (value, body)
    };
    if !body.is_empty() {
        return Err(mismatch(format!(
            "{} trailing bytes after the datum",
            body.len()
        )));
    }
    apache_avro::from_value::<T>(&value).map_err(|e| mismatch(e.to_string()))
}

/// Encodes an event as JSON with the Avro field names.
pub fn encode_json<T: EventType>(event: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(event).map_err(|e| CodecError::Encode {
        contract: T::CONTRACT.full_name(),
        reason: e.to_string(),
    })
}

/// Decodes JSON data into the contract type; the error names the missing or mistyped field.
pub fn decode_json<T: EventType>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let event = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reason = if path == "." || inner.to_string().contains("missing field") {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        };
        CodecError::JsonMismatch {
            contract: T::CONTRACT.full_name(),
            reason,
        }
    })?;
    deserializer.end().map_err(|e| CodecError::JsonMismatch {
        contract: T::CONTRACT.full_name(),
        reason: e.to_string(),
    })?;
    Ok(event)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
