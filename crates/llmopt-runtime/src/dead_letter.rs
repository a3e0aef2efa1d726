use llmopt_events::{DeadLetter, Header};
use llmopt_transport::InboundMessage;

/// The dead-letter record of an input: the original key, headers and value byte for byte, where
/// it came from, and why it was refused. Its id is derived from the position, so a replay
/// produces the same id.
pub fn dead_letter_for(
    service: &str,
    message: &InboundMessage,
    kind: &str,
    reason: &str,
) -> DeadLetter {
    DeadLetter {
        id: format!(
            "dlq/{}/{}/{}",
            message.topic, message.partition, message.offset
        ),
        service: service.to_string(),
        error_kind: kind.to_string(),
        error_message: reason.to_string(),
        source_topic: message.topic.clone(),
        source_partition: message.partition,
        source_offset: message.offset,
        source_timestamp: message.timestamp_ms,
        original_key: message.key.clone(),
        original_headers: message
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        original_value: message.value.clone(),
    }
}
