//! The evolution rule of `schemas/`: a new version of a contract may only add fields with
//! defaults (or drop fields that had defaults). That is Avro *full* compatibility: new readers
//! read old data and old readers read new data, so producers and consumers upgrade in any order.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use thiserror::Error;

/// Why a proposed schema version breaks the evolution rule.
#[derive(Debug, Error)]
pub enum EvolutionError {
    /// One of the two versions is not a valid Avro schema.
    #[error("{which} schema does not parse: {reason}")]
    Parse { which: &'static str, reason: String },
    /// Data written with the old schema cannot be read with the new one.
    #[error("new schema cannot read data written with the old one (backward-incompatible): {0}")]
    Backward(String),
    /// Data written with the new schema cannot be read by consumers still on the old one.
    #[error(
        "old readers cannot read data written with the new schema (forward-incompatible): {0}"
    )]
    Forward(String),
}

/// Checks that `new` is an allowed evolution of `old` (both as `.avsc` JSON text).
pub fn check_evolution(old: &str, new: &str) -> Result<(), EvolutionError> {
    let parse = |which, text| {
        Schema::parse_str(text).map_err(|e| EvolutionError::Parse {
            which,
            reason: e.to_string(),
        })
    };
    let old = parse("old", old)?;
    let new = parse("new", new)?;
    check_parsed_evolution(&old, &new)
}

/// [`check_evolution`] on parsed schemas.
pub fn check_parsed_evolution(old: &Schema, new: &Schema) -> Result<(), EvolutionError> {
    SchemaCompatibility::can_read(old, new).map_err(|e| EvolutionError::Backward(e.to_string()))?;
    SchemaCompatibility::can_read(new, old).map_err(|e| EvolutionError::Forward(e.to_string()))
}
