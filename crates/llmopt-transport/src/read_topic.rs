//! Reading a whole topic from the start, as operator commands do to rebuild a view of it.

use std::time::{Duration, Instant};

use crate::{InboundMessage, PartitionProgress, Transport, TransportError};

/// Every record of `topic` written so far, read with a throw-away consumer group (so no
/// service's offsets move).
///
/// The end is when every assigned partition has been read to its end: the consumer's position
/// has reached the partition's end and, where the transport says so, a fetch came back empty
/// after the last record (a broker's reported end can lag its log). Counting empty polls
/// instead would stop early whenever the broker is slow to serve one partition, and silently
/// return a topic with its tail missing.
pub async fn read_topic(
    transport: &dyn Transport,
    topic: &str,
    purpose: &str,
) -> Result<Vec<InboundMessage>, TransportError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("llmopt-{purpose}-{}-{nanos}", std::process::id());
    let mut consumer = transport.subscribe(&group, &[topic.to_string()]).await?;
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() >= deadline {
            return Err(TransportError::Timeout(format!(
                "reading {topic} to its end took over 2 minutes"
            )));
        }
        match consumer.poll(Duration::from_millis(500)).await? {
            Some(m) => records.push(m),
            None if consumer.assignment()?.is_empty() => {}
            None => {
                let progress = consumer.progress().await?;
                if !progress.is_empty() && progress.iter().all(read_to_end) {
                    break;
                }
            }
        }
    }
    consumer.close().await?;
    Ok(records)
}

/// Whether a partition has been read to its end.
fn read_to_end(p: &PartitionProgress) -> bool {
    let reached = match (p.position, p.end) {
        (_, Some(0)) => true,
        (Some(position), Some(end)) => position >= end,
        _ => false,
    };
    reached && p.at_end != Some(false)
}
