use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client_config;
use crate::{
    Consumer, InboundMessage, KafkaConfig, PartitionProgress, TopicPartition, TransportError,
};

/// How often librdkafka reports statistics, from which consumer lag and each partition's
/// progress (backlog, for the runner's watermark hints) are read.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Logs group rebalances, which are the first thing to look at when a consumer stalls, and keeps
/// the consumer lag of the assigned partitions from librdkafka's periodic statistics.
///
/// Lag from statistics costs no broker round trip: asking the broker for each partition's
/// watermarks took ~250 ms per partition on tansu, long enough to stall a consumer of a few
/// topics × 6 partitions for seconds every measurement.
pub struct RebalanceLogger {
    group: String,
    reading: Arc<Mutex<Reading>>,
}

/// What the last statistics said about the assigned partitions.
#[derive(Default)]
struct Reading {
    lags: Vec<(TopicPartition, i64)>,
    progress: Vec<PartitionProgress>,
}

impl ClientContext for RebalanceLogger {
    /// Reaching a partition's end is reported as an "error" too (partition EOF is on, see
    /// `client_config`); it is the normal state of a caught-up consumer, not worth a line.
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(%error, reason, "librdkafka")
            }
            _ => tracing::error!(%error, reason, "librdkafka"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lags = Vec::new();
        let mut progress = Vec::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's unassigned pseudo-partition; partitions this member does
                // not consume are not "active"; the end is unknown until the first fetch.
                if *partition < 0 || p.fetch_state != "active" || p.hi_offset < 0 {
                    continue;
                }
                // librdkafka's own consumer_lag is -1 for a group that never committed, which
                // is exactly when a backlog matters: count from the log start then (the
                // consumer starts there, auto.offset.reset = earliest).
                let done = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset.max(0)
                };
                let tp = TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                };
                lags.push((tp.clone(), (p.hi_offset - done).max(0)));
                // app_offset: one past the last record handed to the application.
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|o| *o >= 0);
                progress.push(PartitionProgress {
                    partition: tp,
                    position,
                    end: Some(p.hi_offset),
                    at_end: None,
                });
            }
        }
        lags.sort_by(|a, b| a.0.cmp(&b.0));
        progress.sort_by(|a, b| a.partition.cmp(&b.partition));
        if let Ok(mut shared) = self.reading.lock() {
            *shared = Reading { lags, progress };
        }
    }
}

impl ConsumerContext for RebalanceLogger {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// A consumer-group member on Kafka.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<RebalanceLogger>>,
    reading: Arc<Mutex<Reading>>,
    /// Progress asked of the broker for partitions the statistics do not cover (yet), and when.
    fetched: HashMap<TopicPartition, (Instant, PartitionProgress)>,
    /// Per partition: whether the last fetch after the last delivered record came back empty
    /// (librdkafka's partition EOF).
    at_end: HashMap<TopicPartition, bool>,
}

/// How long one broker question about a newly assigned partition may take.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an answer from the broker stands for a partition the statistics do not cover. The
/// statistics cover a partition from its first fetch on; one they never cover is not being
/// fetched, and its end must still be seen to grow, or a stalled member would look caught up.
const FETCHED_PROGRESS_TTL: Duration = Duration::from_secs(10);

/// Committed offset (or log start) and high watermark of `partitions`, from the broker.
fn fetch_progress(
    consumer: &StreamConsumer<RebalanceLogger>,
    partitions: Vec<TopicPartition>,
) -> Result<Vec<PartitionProgress>, TransportError> {
    let mut tpl = TopicPartitionList::new();
    for tp in &partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let committed = consumer
        .committed_offsets(tpl, PROGRESS_TIMEOUT)
        .map_err(|e| TransportError::kafka("committed offsets", e))?;
    partitions
        .into_iter()
        .map(|tp| {
            let (low, high) = consumer
                .fetch_watermarks(&tp.topic, tp.partition, PROGRESS_TIMEOUT)
                .map_err(|e| TransportError::kafka("fetch watermarks", e))?;
            let position = match committed
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            Ok(PartitionProgress {
                partition: tp,
                position: Some(position),
                end: Some(high),
                at_end: None,
            })
        })
        .collect()
}

impl KafkaConsumer {
    pub(crate) fn subscribe(
        config: &KafkaConfig,
        client_id: &str,
        group: &str,
        topics: &[String],
    ) -> Result<Self, TransportError> {
        let reading = Arc::new(Mutex::new(Reading::default()));
        let context = RebalanceLogger {
            group: group.to_string(),
            reading: reading.clone(),
        };
        let mut client = client_config::consumer(config, client_id, group);
        if client.get("statistics.interval.ms").is_none() {
            client.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        }
        let consumer: StreamConsumer<RebalanceLogger> = client
            .create_with_context(context)
            .map_err(|e| TransportError::kafka("create consumer", e))?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| TransportError::kafka("subscribe", e))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            reading,
            fetched: HashMap::new(),
            at_end: HashMap::new(),
        })
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Option<InboundMessage>, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let received = loop {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return Ok(None),
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    // The event names no topic: every owned topic's partition of that number
                    // is marked (only a multi-topic consumer can be wrong, and only until its
                    // next record from there).
                    for tp in self.assignment()? {
                        if tp.partition == partition {
                            self.at_end.insert(tp, true);
                        }
                    }
                }
                Ok(result) => break result.map_err(|e| TransportError::kafka("consume", e))?,
            }
        };
        self.at_end.insert(
            TopicPartition {
                topic: received.topic().to_string(),
                partition: received.partition(),
            },
            false,
        );
        let headers = received
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(InboundMessage {
            topic: received.topic().to_string(),
            partition: received.partition(),
            offset: received.offset(),
            key: received.key().map(<[u8]>::to_vec),
            value: received.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: received.timestamp().to_millis(),
        }))
    }

    fn ack(&mut self, message: &InboundMessage) -> Result<(), TransportError> {
        match self
            .consumer
            .store_offset(&message.topic, message.partition, message.offset)
        {
            Ok(()) => Ok(()),
            // The partition moved to another member; it will read the message again.
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(topic = %message.topic, partition = message.partition,
                    "ack after revocation ignored; the new owner re-reads the message");
                Ok(())
            }
            Err(e) => Err(TransportError::kafka("store offset", e)),
        }
    }

    async fn commit(&mut self) -> Result<(), TransportError> {
        let consumer = self.consumer.clone();
        let result =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await
                .map_err(|e| TransportError::Timeout(format!("commit task failed: {e}")))?;
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(TransportError::kafka("commit", e)),
        }
    }

    fn pause(&mut self) -> Result<(), TransportError> {
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| TransportError::kafka("assignment", e))?;
        self.consumer
            .pause(&assigned)
            .map_err(|e| TransportError::kafka("pause", e))
    }

    fn resume(&mut self) -> Result<(), TransportError> {
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| TransportError::kafka("assignment", e))?;
        self.consumer
            .resume(&assigned)
            .map_err(|e| TransportError::kafka("resume", e))
    }

    fn assignment(&self) -> Result<Vec<TopicPartition>, TransportError> {
        let tpl = self
            .consumer
            .assignment()
            .map_err(|e| TransportError::kafka("assignment", e))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            })
            .collect())
    }

    /// The lag librdkafka last reported (every 5 s) for the partitions this member consumes:
    /// the partition end minus the committed offset; no broker round trip.
    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        Ok(self
            .reading
            .lock()
            .map(|r| r.lags.clone())
            .unwrap_or_default())
    }

    /// From the same statistics (every second). A partition the statistics do not cover (just
    /// assigned, or never fetched) is asked of the broker (its committed offset and high
    /// watermark), again every [`FETCHED_PROGRESS_TTL`] while that lasts: right after an
    /// assignment is exactly when a backlog must be known, and a member that owns a partition
    /// without fetching it must show the records piling up.
    async fn progress(&mut self) -> Result<Vec<PartitionProgress>, TransportError> {
        let assigned = self.assignment()?;
        let mut known: Vec<PartitionProgress> = self
            .reading
            .lock()
            .map(|r| r.progress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| assigned.contains(&p.partition))
            .collect();
        self.fetched.retain(|tp, (at, _)| {
            assigned.contains(tp)
                && !known.iter().any(|p| &p.partition == tp)
                && at.elapsed() < FETCHED_PROGRESS_TTL
        });
        let missing: Vec<TopicPartition> = assigned
            .into_iter()
            .filter(|tp| {
                !known.iter().any(|p| &p.partition == tp) && !self.fetched.contains_key(tp)
            })
            .collect();
        if !missing.is_empty() {
            let consumer = self.consumer.clone();
            let fetched = tokio::task::spawn_blocking(move || fetch_progress(&consumer, missing))
                .await
                .map_err(|e| TransportError::Timeout(format!("progress task failed: {e}")))??;
            let now = Instant::now();
            for p in fetched {
                self.fetched.insert(p.partition.clone(), (now, p));
            }
        }
        known.extend(self.fetched.values().map(|(_, p)| p.clone()));
        for p in &mut known {
            p.at_end = Some(self.at_end.get(&p.partition).copied().unwrap_or(false));
        }
        Ok(known)
    }

    async fn close(mut self: Box<Self>) -> Result<(), TransportError> {
        self.commit().await?;
        let consumer = self.consumer;
        // Dropping the last handle runs librdkafka's blocking close (leave group, final commit).
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await
        .map_err(|e| TransportError::Timeout(format!("close task failed: {e}")))
    }
}
