//! The one error type of the crate: everything that can be wrong with a fleet, a scenario or a
//! price table a user hands in, reported instead of panicking.

use thiserror::Error;

/// Why a fleet, scenario, catalogue or price table was rejected.
#[derive(Debug, Error)]
pub enum SimError {
    /// The TOML text does not parse or does not match the expected shape.
    #[error("invalid TOML: {0}")]
    TomlDe(#[from] toml::de::Error),
    /// A value could not be written as TOML (e.g. a non-finite float).
    #[error("cannot write TOML: {0}")]
    TomlSer(#[from] toml::ser::Error),
    /// A provider/model is referenced that the catalogue does not describe.
    #[error("{context}: unknown model {provider}/{model}")]
    UnknownModel {
        /// Where the reference was found.
        context: String,
        /// Provider named by the reference.
        provider: String,
        /// Model named by the reference.
        model: String,
    },
    /// An app/route is referenced that the fleet does not have.
    #[error("{context}: unknown route {app}/{route}")]
    UnknownRoute {
        /// Where the reference was found.
        context: String,
        /// App named by the reference.
        app: String,
        /// Route named by the reference.
        route: String,
    },
    /// The same name appears twice where names must be unique.
    #[error("duplicate {what}: {name}")]
    Duplicate {
        /// What kind of thing is duplicated (app, route, model, incident).
        what: &'static str,
        /// The duplicated name.
        name: String,
    },
    /// A field holds a value outside its allowed range.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SimError {
    /// Shorthand for [`SimError::InvalidValue`].
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks that `value` is finite and within `[lo, hi]`.
pub(crate) fn check_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), SimError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(SimError::invalid(
            field,
            format!("{value} is not within [{lo}, {hi}]"),
        ))
    }
}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn check_positive(field: &str, value: f64) -> Result<(), SimError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(SimError::invalid(
            field,
            format!("{value} must be finite and > 0"),
        ))
    }
}
