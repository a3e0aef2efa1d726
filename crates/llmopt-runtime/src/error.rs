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
    /// Another instance owns a partition this one still processed (it missed a rebalance):
    /// this one stops rather than overwrite the new owner's checkpoint, and rejoins when
    /// restarted.
    #[error("fenced off checkpoint `{key}`: {reason}")]
    Fenced { key: String, reason: String },
    /// A core's long job failed to run to completion (it panicked): a bug, reported rather
    /// than hidden; the input stays unacked and is delivered again after a restart.
    #[error("job for input `{input}` failed: {reason}")]
    Job { input: String, reason: String },
    /// A checkpoint could not be restored into the core.
    #[error("cannot restore checkpoint `{key}`: {reason}")]
    Restore { key: String, reason: String },
    /// A receiver outside the pipeline (Alertmanager, a webhook) could not take an output of
    /// the shell's effects for a reason that may pass (down, timing out, answering 5xx).
    #[error("sink {sink} unavailable: {reason}")]
    Sink { sink: String, reason: String },
}

impl RuntimeError {
    /// Whether the failure is an outage of the broker or the state store that retrying later
    /// may get past; the runner then waits with backoff instead of stopping.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::Transport(e) => e.is_transient(),
            RuntimeError::State(e) => e.is_transient(),
            RuntimeError::Sink { .. } => true,
            RuntimeError::Encode { .. }
            | RuntimeError::Admin(_)
            | RuntimeError::Fenced { .. }
            | RuntimeError::Job { .. }
            | RuntimeError::Restore { .. } => false,
        }
    }
}
