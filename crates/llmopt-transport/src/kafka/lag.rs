use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::client_config;
use crate::{KafkaConfig, TopicPartition, TransportError};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Committed offsets of a group against the partitions' ends. The client carries the group id
/// but never subscribes, so asking does not disturb the group.
pub(crate) fn group_lag(
    config: &KafkaConfig,
    client_id: &str,
    group: &str,
    topics: &[String],
) -> Result<i64, TransportError> {
    let client: BaseConsumer = client_config::consumer(config, client_id, group)
        .create()
        .map_err(|e| TransportError::kafka("create lag client", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| TransportError::kafka("metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = client
                    .fetch_watermarks(topic, p.id(), TIMEOUT)
                    .map_err(|e| TransportError::kafka("fetch watermarks", e))?;
                tpl.add_partition(topic, p.id());
                ends.push(((topic.clone(), p.id()), high));
            }
        }
    }
    let committed = client
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| TransportError::kafka("committed offsets", e))?;
    let mut lag = 0;
    for ((topic, partition), high) in ends {
        let done = match committed
            .find_partition(&topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        lag += (high - done).max(0);
    }
    Ok(lag)
}

/// Committed offsets of `group` on every partition of `topics`.
pub(crate) fn committed(
    config: &KafkaConfig,
    client_id: &str,
    group: &str,
    topics: &[String],
) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
    let client: BaseConsumer = client_config::consumer(config, client_id, group)
        .create()
        .map_err(|e| TransportError::kafka("create offsets client", e))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| TransportError::kafka("metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    let committed = client
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| TransportError::kafka("committed offsets", e))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((
                TopicPartition {
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                },
                o,
            )),
            _ => None,
        })
        .collect())
}
