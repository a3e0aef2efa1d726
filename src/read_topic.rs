//! Reading a whole topic from the start, as operator commands do to rebuild a view of it.

use std::time::{Duration, Instant};

use llmopt_transport::{InboundMessage, Transport};

/// Every record of `topic` written so far, read with a throw-away consumer group (so no
/// service's offsets move). The end is when five polls in a row come back empty.
pub async fn read_topic(
    transport: &dyn Transport,
    topic: &str,
    purpose: &str,
) -> anyhow::Result<Vec<InboundMessage>> {
    let group = format!(
        "llmopt-{purpose}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let mut consumer = transport.subscribe(&group, &[topic.to_string()]).await?;
    let mut records = Vec::new();
    let mut empty_polls = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while empty_polls < 5 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} took over 2 minutes"
        );
        match consumer.poll(Duration::from_millis(500)).await? {
            Some(m) => {
                empty_polls = 0;
                records.push(m);
            }
            None if consumer.assignment()?.is_empty() => {}
            None => empty_polls += 1,
        }
    }
    consumer.close().await?;
    Ok(records)
}
