use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Inner;
use crate::{Consumer, InboundMessage, PartitionProgress, TopicPartition, TransportError};

/// A member of a consumer group on the embedded log.
pub struct EmbeddedConsumer {
    inner: Arc<Inner>,
    group: String,
    member: u64,
    /// Generation this member has synced to.
    generation: u64,
    /// Whether `assigned` is in force (every member synced to `generation`).
    active: bool,
    assigned: Vec<TopicPartition>,
    positions: HashMap<TopicPartition, i64>,
    acked: HashMap<TopicPartition, i64>,
    cursor: usize,
    closed: bool,
    /// Paused ([`Consumer::pause`]): polls deliver nothing.
    paused: bool,
}

impl EmbeddedConsumer {
    pub(crate) fn new(inner: Arc<Inner>, group: String, member: u64) -> Self {
        Self {
            inner,
            group,
            member,
            generation: 0,
            active: false,
            assigned: Vec::new(),
            positions: HashMap::new(),
            acked: HashMap::new(),
            cursor: 0,
            closed: false,
            paused: false,
        }
    }

    /// One step of the group protocol and, if this member owns partitions, one read.
    fn try_next(&mut self) -> Option<InboundMessage> {
        let mut state = self.inner.lock();
        let group = state.groups.get_mut(&self.group)?;
        let mut changed = false;
        if group.generation != self.generation {
            // Revocation: give everything up. Acked offsets not committed yet are dropped, as
            // librdkafka does with auto-commit off: a runner with checkpoints commits only
            // what a checkpoint covers, so the next owner re-reads the rest.
            self.acked.clear();
            self.assigned.clear();
            self.positions.clear();
            self.active = false;
            self.generation = group.generation;
            if let Some(me) = group.members.get_mut(&self.member) {
                me.synced = self.generation;
            }
            changed = true;
        }
        if !self.active && group.members.values().all(|m| m.synced == self.generation) {
            let group = &state.groups[&self.group];
            self.assigned = state.assignment(group, self.member);
            self.positions = self
                .assigned
                .iter()
                .map(|tp| (tp.clone(), group.committed.get(tp).copied().unwrap_or(0)))
                .collect();
            self.active = true;
        }
        let mut found = None;
        if self.active && !self.paused && !self.assigned.is_empty() {
            let n = self.assigned.len();
            for step in 0..n {
                let tp = &self.assigned[(self.cursor + step) % n];
                let position = self.positions.get(tp).copied().unwrap_or(0);
                let Some(record) = state
                    .topics
                    .get(&tp.topic)
                    .and_then(|parts| parts.get(tp.partition as usize))
                    .and_then(|log| log.get(position as usize))
                else {
                    continue;
                };
                found = Some(InboundMessage {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: position,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                    timestamp_ms: record.timestamp_ms,
                });
                self.positions.insert(tp.clone(), position + 1);
                self.cursor = (self.cursor + step + 1) % n;
                break;
            }
        }
        drop(state);
        if changed {
            self.inner.changed.notify_waiters();
        }
        found
    }

    fn commit_acked(&mut self) {
        let mut state = self.inner.lock();
        if let Some(group) = state.groups.get_mut(&self.group) {
            if group.generation == self.generation {
                for (tp, offset) in self.acked.drain() {
                    group.committed.insert(tp, offset);
                }
            }
        }
    }

    /// Leaves the group; `commit`: commits the acked offsets first (a clean close; a dropped
    /// consumer is a crash and commits nothing, like librdkafka with auto-commit off).
    fn leave(&mut self, commit: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        if commit {
            self.commit_acked();
        }
        self.inner.lock().leave(&self.group, self.member);
        self.inner.changed.notify_waiters();
    }
}

impl EmbeddedConsumer {
    /// Position and end of every owned partition: exact, read under the log's lock.
    fn exact_progress(&self) -> Vec<PartitionProgress> {
        if !self.active {
            return Vec::new();
        }
        let state = self.inner.lock();
        self.assigned
            .iter()
            .map(|tp| {
                let end = state
                    .topics
                    .get(&tp.topic)
                    .and_then(|parts| parts.get(tp.partition as usize))
                    .map_or(0, |log| log.len() as i64);
                PartitionProgress {
                    partition: tp.clone(),
                    position: Some(self.positions.get(tp).copied().unwrap_or(0)),
                    end: Some(end),
                    at_end: None,
                }
            })
            .collect()
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Option<InboundMessage>, TransportError> {
        if timeout.is_zero() {
            // What is there now, without touching the timer (whose granularity is a
            // millisecond): in-process drains and read-ahead poll like this.
            return Ok(self.try_next());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let inner = self.inner.clone();
            let notified = inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(message) = self.try_next() {
                return Ok(Some(message));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    fn ack(&mut self, message: &InboundMessage) -> Result<(), TransportError> {
        let tp = TopicPartition {
            topic: message.topic.clone(),
            partition: message.partition,
        };
        // A message from a partition this member lost in a rebalance will be read again by
        // its new owner; acking it here would commit past records nobody processed.
        if self.active && self.assigned.contains(&tp) {
            let next = message.offset + 1;
            let entry = self.acked.entry(tp).or_insert(next);
            *entry = (*entry).max(next);
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), TransportError> {
        self.commit_acked();
        Ok(())
    }

    fn pause(&mut self) -> Result<(), TransportError> {
        self.paused = true;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), TransportError> {
        self.paused = false;
        self.inner.changed.notify_waiters();
        Ok(())
    }

    fn assignment(&self) -> Result<Vec<TopicPartition>, TransportError> {
        Ok(if self.active {
            self.assigned.clone()
        } else {
            Vec::new()
        })
    }

    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        Ok(self
            .exact_progress()
            .into_iter()
            .map(|p| {
                let lag = p.end.unwrap_or(0) - p.position.unwrap_or(0);
                (p.partition, lag.max(0))
            })
            .collect())
    }

    async fn progress(&mut self) -> Result<Vec<PartitionProgress>, TransportError> {
        Ok(self.exact_progress())
    }

    async fn close(mut self: Box<Self>) -> Result<(), TransportError> {
        self.leave(true);
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    /// Leaving on drop mirrors rdkafka, whose consumer leaves its group when dropped; with
    /// auto-commit off (llmopt's setting) it commits nothing then.
    fn drop(&mut self) {
        self.leave(false);
    }
}
