use thiserror::Error;

/// Failures of the transport. Input problems never show up here: a record's content is the
/// decoder's business; these are broker, configuration and lifecycle errors.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The Kafka client reported an error.
    #[error("kafka {op}: {source}")]
    Kafka {
        op: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The broker did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl TransportError {
    pub(crate) fn kafka(op: &'static str, source: rdkafka::error::KafkaError) -> Self {
        TransportError::Kafka { op, source }
    }
}
