use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
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
///
/// It also holds revocations back until the runner has let go of the partitions (see
/// [`Handover`]).
pub struct RebalanceLogger {
    group: String,
    reading: Arc<Mutex<Reading>>,
    handover: Arc<Handover>,
}

/// A revocation the group asked for and this member has not answered yet.
///
/// librdkafka waits for the application to unassign before the member rejoins, and the
/// application may answer after the rebalance callback returned (within the rebalance
/// timeout, `max.poll.interval.ms`). The callback runs inside the runner's own poll, so it
/// cannot wait for the runner there: it parks the partitions here, wakes the poll, and the
/// runner flushes, checkpoints and commits them before calling [`Consumer::release`].
#[derive(Default)]
struct Handover {
    state: Mutex<HandoverState>,
    /// Wakes a poll in progress when a revocation arrives.
    revoked: tokio::sync::Notify,
}

#[derive(Default)]
struct HandoverState {
    /// Partitions being revoked, owned until released.
    revoking: Vec<TopicPartition>,
    /// Leaving the group: revocations are answered at once (librdkafka's close waits for them).
    closing: bool,
}

impl Handover {
    fn lock(&self) -> MutexGuard<'_, HandoverState> {
        // A poisoned lock only means a panic elsewhere while holding it; the partition list
        // is still meaningful.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

/// Gives up `partitions` (all of them under the eager protocol, which revokes the whole
/// assignment at every rebalance).
fn unassign<C: rdkafka::consumer::Consumer<RebalanceLogger>>(
    consumer: &C,
    partitions: &[TopicPartition],
) -> Result<(), KafkaError> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => {
            let mut tpl = TopicPartitionList::new();
            for tp in partitions {
                tpl.add_partition(&tp.topic, tp.partition);
            }
            consumer.incremental_unassign(&tpl)
        }
        _ => consumer.unassign(),
    }
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
    /// librdkafka's default handling, except that a revocation of partitions this member still
    /// owns is parked until the runner releases it (see [`Handover`]). A lost assignment (the
    /// session expired: another member may own the partitions already) and a revocation while
    /// closing are answered at once, as is an error.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // A new assignment supersedes a revocation not released yet (librdkafka
                // rejoins without waiting when a subscribed topic's metadata changes):
                // releasing it afterwards would throw the new assignment away.
                self.handover.lock().revoking.clear();
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
                    _ => consumer.assign(tpl),
                };
                match assigned {
                    Ok(()) => tracing::info!(group = %self.group, partitions = tpl.count(),
                        "partitions assigned"),
                    Err(e) => tracing::error!(group = %self.group, error = %e,
                        "cannot take the assigned partitions"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = partitions_of(tpl);
                let lost = consumer.assignment_lost();
                let mut handover = self.handover.lock();
                if handover.closing || lost || partitions.is_empty() {
                    drop(handover);
                    if let Err(e) = unassign(consumer, &partitions) {
                        tracing::error!(group = %self.group, error = %e, "cannot let go of partitions");
                    }
                    tracing::info!(group = %self.group, partitions = partitions.len(), lost,
                        "partitions revoked");
                    return;
                }
                for tp in partitions {
                    if !handover.revoking.contains(&tp) {
                        handover.revoking.push(tp);
                    }
                }
                tracing::info!(group = %self.group, partitions = handover.revoking.len(),
                    "partitions being revoked: letting go once what was read from them is checkpointed and committed");
                drop(handover);
                self.handover.revoked.notify_one();
            }
            _ => {
                let code: RDKafkaErrorCode = err.into();
                tracing::warn!(group = %self.group, error = %code, "rebalance error");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(group = %self.group, error = %e, "cannot let go of partitions");
                }
            }
        }
    }
}

/// A consumer-group member on Kafka.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<RebalanceLogger>>,
    reading: Arc<Mutex<Reading>>,
    handover: Arc<Handover>,
    /// Progress asked of the broker for partitions the statistics do not cover (yet), and when.
    fetched: HashMap<TopicPartition, (Instant, PartitionProgress)>,
    /// Per partition: whether the last fetch after the last delivered record came back empty
    /// (librdkafka's partition EOF).
    at_end: HashMap<TopicPartition, bool>,
}

/// A consumer dropped without [`Consumer::close`] (its task aborted, say) still leaves the
/// group: librdkafka's close, run by the drop, revokes the assignment and waits for the
/// answer, which must come at once rather than be parked for a runner that is gone.
impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.handover.lock().closing = true;
        if let Err(e) = self.release() {
            tracing::warn!(error = %e, "cannot let go of partitions while closing");
        }
    }
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
        let handover = Arc::new(Handover::default());
        let context = RebalanceLogger {
            group: group.to_string(),
            reading: reading.clone(),
            handover: handover.clone(),
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
            handover,
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
            let next = async {
                tokio::select! {
                    biased;
                    received = self.consumer.recv() => Some(received),
                    // A revocation to answer: the runner hands the partitions over first.
                    _ = self.handover.revoked.notified() => None,
                }
            };
            match tokio::time::timeout_at(deadline, next).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(received)) => match received {
                    Err(KafkaError::PartitionEOF(partition)) => {
                        // The event names no topic: every owned topic's partition of that
                        // number is marked (only a multi-topic consumer can be wrong, and only
                        // until its next record from there).
                        for tp in self.assignment()? {
                            if tp.partition == partition {
                                self.at_end.insert(tp, true);
                            }
                        }
                    }
                    result => break result.map_err(|e| TransportError::kafka("consume", e))?,
                },
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

    fn revoking(&self) -> Vec<TopicPartition> {
        self.handover.lock().revoking.clone()
    }

    fn release(&mut self) -> Result<(), TransportError> {
        let revoking = std::mem::take(&mut self.handover.lock().revoking);
        if revoking.is_empty() {
            return Ok(());
        }
        for tp in &revoking {
            self.at_end.remove(tp);
        }
        unassign(self.consumer.as_ref(), &revoking)
            .map_err(|e| TransportError::kafka("unassign", e))?;
        tracing::info!(
            partitions = revoking.len(),
            "partitions released to the group"
        );
        Ok(())
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
        // From here on revocations are answered at once: librdkafka's close waits for them.
        self.handover.lock().closing = true;
        self.release()?;
        let consumer = Arc::clone(&self.consumer);
        drop(self);
        // Dropping the last handle runs librdkafka's blocking close (leave group, final commit).
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await
        .map_err(|e| TransportError::Timeout(format!("close task failed: {e}")))
    }
}
