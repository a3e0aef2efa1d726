//! Why a quantization could not be done, in the categories an operator acts on: the failure
//! event carries the category, the message names the file or parameter.

use std::path::Path;

use thiserror::Error;

/// A quantization, evaluation or artifact error.
#[derive(Debug, Error)]
pub enum QuantError {
    /// The model directory or one of its files does not exist.
    #[error("model not found: {path}")]
    ModelNotFound {
        /// What was looked for.
        path: String,
    },
    /// The model is not a BERT encoder this worker implements, or its files are inconsistent.
    #[error("unsupported architecture: {reason}")]
    UnsupportedArchitecture {
        /// What is unsupported.
        reason: String,
    },
    /// The job's parameters are out of range or contradict each other.
    #[error("bad parameters: {reason}")]
    BadParameters {
        /// Which parameter, and why.
        reason: String,
    },
    /// The artifact store ran out of space.
    #[error("out of disk writing {path}: {source}")]
    OutOfDisk {
        /// File being written.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Any other I/O failure, with the file it concerns.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An artifact that does not match its manifest, or is malformed.
    #[error("invalid artifact: {reason}")]
    InvalidArtifact {
        /// What does not match.
        reason: String,
    },
    /// A numerical failure (e.g. a Hessian that is not positive definite even after damping).
    #[error("numerical failure: {reason}")]
    Numerical {
        /// What failed.
        reason: String,
    },
}

impl QuantError {
    /// Classifies an I/O error on `path`: missing files and full disks get their own category.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.display().to_string();
        match source.kind() {
            std::io::ErrorKind::NotFound => QuantError::ModelNotFound { path },
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                QuantError::OutOfDisk { path, source }
            }
            _ => QuantError::Io { path, source },
        }
    }

    /// An I/O error while writing the artifact: a missing directory is not a missing model.
    pub fn write(path: &Path, source: std::io::Error) -> Self {
        match QuantError::io(path, source) {
            QuantError::ModelNotFound { path } => QuantError::Io {
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                path,
            },
            other => other,
        }
    }

    /// A bad-parameter error.
    pub fn bad(reason: impl Into<String>) -> Self {
        QuantError::BadParameters {
            reason: reason.into(),
        }
    }
}
