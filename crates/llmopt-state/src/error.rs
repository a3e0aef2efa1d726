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
