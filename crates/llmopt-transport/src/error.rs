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

    /// Whether retrying later may succeed: the broker is unreachable, restarting or moving a
    /// partition's leadership. librdkafka reconnects by itself; the caller only waits.
    pub fn is_transient(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match self {
            TransportError::Timeout(_) => true,
            TransportError::Config(_) => false,
            TransportError::Kafka { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(
                    Code::BrokerTransportFailure
                        | Code::AllBrokersDown
                        | Code::NetworkException
                        | Code::RequestTimedOut
                        | Code::OperationTimedOut
                        | Code::NotCoordinator
                        | Code::CoordinatorNotAvailable
                        | Code::CoordinatorLoadInProgress
                        | Code::LeaderNotAvailable
                        | Code::NotLeaderForPartition
                        | Code::Resolve
                )
            ),
        }
    }
}
