//! An in-process, in-memory log with Kafka's semantics: topics of partitions, offsets, consumer
//! groups that share partitions among members, and commits. It lets every service run in one
//! process with no servers, and it is strict where Kafka is strict: a rebalance waits until
//! every member has given up its old partitions (committing what it acked), so a partition is
//! never read by two members of a group at once.

mod consumer;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

pub use consumer::EmbeddedConsumer;
use state::{Record, State};

use crate::{
    murmur2_partition, Consumer, Delivered, OutboundMessage, TopicPartition, TopicSpec, Transport,
    TransportError,
};

/// The embedded transport. Cloning shares the same log, as separate clients of one broker do.
#[derive(Clone)]
pub struct EmbeddedTransport {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    /// Woken on every new record and every group change.
    changed: Notify,
    default_partitions: i32,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EmbeddedTransport {
    /// A new, empty log; topics created implicitly get `default_partitions` partitions.
    pub fn new(default_partitions: i32) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                default_partitions: default_partitions.max(1),
            }),
        }
    }

    /// Offset the group has committed for a partition (the next offset it will read).
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.inner
            .lock()
            .groups
            .get(group)?
            .committed
            .get(&tp)
            .copied()
    }

    /// Number of records in each partition of a topic (its high watermarks).
    pub fn end_offsets(&self, topic: &str) -> Vec<i64> {
        self.inner
            .lock()
            .topics
            .get(topic)
            .map(|parts| parts.iter().map(|p| p.len() as i64).collect())
            .unwrap_or_default()
    }
}

impl EmbeddedTransport {
    /// Appends a record; the log is in memory, so it is acknowledged at once.
    fn append(&self, topic: &str, message: OutboundMessage) -> Delivered {
        let mut state = self.inner.lock();
        let partitions = state.create_topic(topic, self.inner.default_partitions);
        let partition = match &message.key {
            Some(key) => murmur2_partition(key, partitions),
            None => state.next_round_robin(topic, partitions),
        };
        let log = state.partition_mut(topic, partition);
        let offset = log.len() as i64;
        log.push(Record {
            key: message.key,
            value: message.value,
            headers: message.headers,
            timestamp_ms: message.timestamp_ms,
        });
        drop(state);
        self.inner.changed.notify_waiters();
        Delivered { partition, offset }
    }
}

impl Default for EmbeddedTransport {
    fn default() -> Self {
        Self::new(6)
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), TransportError> {
        let mut state = self.inner.lock();
        for spec in topics {
            state.create_topic(&spec.name, spec.partitions);
        }
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    fn enqueue(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<crate::PendingDelivery, TransportError> {
        let delivered = self.append(topic, message);
        Ok(Box::pin(std::future::ready(Ok(delivered))))
    }

    async fn publish(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<Delivered, TransportError> {
        Ok(self.append(topic, message))
    }

    async fn committed_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        let state = self.inner.lock();
        let Some(group) = state.groups.get(group) else {
            return Ok(Vec::new());
        };
        let mut offsets: Vec<(TopicPartition, i64)> = group
            .committed
            .iter()
            .filter(|(tp, _)| topics.contains(&tp.topic))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        offsets.sort();
        Ok(offsets)
    }

    async fn group_lag(&self, group: &str, topics: &[String]) -> Result<i64, TransportError> {
        let state = self.inner.lock();
        let committed = state.groups.get(group).map(|g| &g.committed);
        let mut lag = 0;
        for topic in topics {
            let Some(partitions) = state.topics.get(topic) else {
                continue;
            };
            for (partition, log) in partitions.iter().enumerate() {
                let tp = TopicPartition {
                    topic: topic.clone(),
                    partition: partition as i32,
                };
                let done = committed.and_then(|c| c.get(&tp)).copied().unwrap_or(0);
                lag += (log.len() as i64 - done).max(0);
            }
        }
        Ok(lag)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let mut state = self.inner.lock();
        for topic in topics {
            state.create_topic(topic, self.inner.default_partitions);
        }
        let member = state.join(group, topics);
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(Box::new(EmbeddedConsumer::new(
            self.inner.clone(),
            group.to_string(),
            member,
        )))
    }
}
