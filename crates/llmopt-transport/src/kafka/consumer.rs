use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client_config;
use crate::{Consumer, InboundMessage, KafkaConfig, TopicPartition, TransportError};

/// Logs group rebalances, which are the first thing to look at when a consumer stalls.
pub struct RebalanceLogger {
    group: String,
}

impl ClientContext for RebalanceLogger {}

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
}

impl KafkaConsumer {
    pub(crate) fn subscribe(
        config: &KafkaConfig,
        client_id: &str,
        group: &str,
        topics: &[String],
    ) -> Result<Self, TransportError> {
        let context = RebalanceLogger {
            group: group.to_string(),
        };
        let consumer: StreamConsumer<RebalanceLogger> =
            client_config::consumer(config, client_id, group)
                .create_with_context(context)
                .map_err(|e| TransportError::kafka("create consumer", e))?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| TransportError::kafka("subscribe", e))?;
        Ok(Self {
            consumer: Arc::new(consumer),
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

    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            let positions = consumer
                .position()
                .map_err(|e| TransportError::kafka("position", e))?;
            let mut lags = Vec::new();
            for element in positions.elements() {
                let (_, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))
                    .map_err(|e| TransportError::kafka("fetch watermarks", e))?;
                let position = match element.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    _ => continue,
                };
                lags.push((
                    TopicPartition {
                        topic: element.topic().to_string(),
                        partition: element.partition(),
                    },
                    (high - position).max(0),
                ));
            }
            Ok(lags)
        })
        .await
        .map_err(|e| TransportError::Timeout(format!("lag task failed: {e}")))?
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
