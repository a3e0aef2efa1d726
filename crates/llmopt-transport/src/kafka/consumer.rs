use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client_config;
use crate::{Consumer, InboundMessage, KafkaConfig, TopicPartition, TransportError};

/// How often librdkafka reports statistics, from which consumer lag is read.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Logs group rebalances, which are the first thing to look at when a consumer stalls, and keeps
/// the consumer lag of the assigned partitions from librdkafka's periodic statistics.
///
/// Lag from statistics costs no broker round trip: asking the broker for each partition's
/// watermarks took ~250 ms per partition on tansu, long enough to stall a consumer of a few
/// topics × 6 partitions for seconds every measurement.
pub struct RebalanceLogger {
    group: String,
    lags: Arc<Mutex<Vec<(TopicPartition, i64)>>>,
}

impl ClientContext for RebalanceLogger {
    fn stats(&self, statistics: Statistics) {
        let mut lags = Vec::new();
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
                lags.push((
                    TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    (p.hi_offset - done).max(0),
                ));
            }
        }
        lags.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
        if let Ok(mut shared) = self.lags.lock() {
            *shared = lags;
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
    lags: Arc<Mutex<Vec<(TopicPartition, i64)>>>,
}

impl KafkaConsumer {
    pub(crate) fn subscribe(
        config: &KafkaConfig,
        client_id: &str,
        group: &str,
        topics: &[String],
    ) -> Result<Self, TransportError> {
        let lags = Arc::new(Mutex::new(Vec::new()));
        let context = RebalanceLogger {
            group: group.to_string(),
            lags: lags.clone(),
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
            lags,
        })
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, timeout: Duration) -> Result<Option<InboundMessage>, TransportError> {
        let received = match tokio::time::timeout(timeout, self.consumer.recv()).await {
            Err(_) => return Ok(None),
            Ok(result) => result.map_err(|e| TransportError::kafka("consume", e))?,
        };
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
        Ok(self.lags.lock().map(|l| l.clone()).unwrap_or_default())
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
