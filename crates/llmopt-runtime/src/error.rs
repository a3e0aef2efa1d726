use thiserror::Error;

/// Failures that stop a runner. Bad input never does: it is dead-lettered.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The transport failed (broker unreachable, commit refused, ...).
    #[error(transparent)]
    Transport(#[from] llmopt_transport::TransportError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] llmopt_state::StateError),
    /// An output could not be encoded: a bug in a core, reported rather than dropped.
    #[error("cannot encode output `{id}`: {reason}")]
    Encode { id: String, reason: String },
    /// The admin server could not start.
    #[error("admin server: {0}")]
    Admin(String),
}
