use thiserror::Error;

/// Failures of the state store.
#[derive(Debug, Error)]
pub enum StateError {
    /// The Redis server or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Stored data could not be read back (written by something else, or corrupted).
    #[error("corrupt state at `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
    /// The configuration is unusable.
    #[error("invalid state store configuration: {0}")]
    Config(String),
}

impl StateError {
    /// Whether retrying later may succeed: the server is unreachable, restarting or loading.
    /// The connection manager reconnects by itself; the caller only waits.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(
                        e.kind(),
                        ::redis::ErrorKind::BusyLoadingError | ::redis::ErrorKind::TryAgain
                    )
            }
            StateError::Corrupt { .. } | StateError::Config(_) => false,
        }
    }
}
