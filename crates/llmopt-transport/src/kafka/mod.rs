//! The Kafka transport, through rdkafka (librdkafka).
//!
//! The producer is idempotent (`enable.idempotence=true`: no duplicates or reordering from
//! retries). Consumers store an offset only when the message is acked and let librdkafka commit
//! stored offsets (periodically, on rebalance and on close), which is the at-least-once pattern of
//! rust-rdkafka's example; [`Consumer::commit`](crate::Consumer::commit) forces a synchronous commit.

mod admin;
mod client_config;
mod consumer;
mod lag;

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

pub use consumer::KafkaConsumer;

/// The rdkafka record of a message (librdkafka copies the bytes when it is enqueued).
fn record<'a>(topic: &'a str, message: &'a OutboundMessage) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (key, value) in &message.headers {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = message.key.as_deref() {
        record = record.key(key);
    }
    if let Some(value) = message.value.as_deref() {
        record = record.payload(value);
    }
    if let Some(ts) = message.timestamp_ms {
        record = record.timestamp(ts);
    }
    record
}

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{
    Consumer, Delivered, KafkaConfig, OutboundMessage, PendingDelivery, TopicSpec, Transport,
    TransportError,
};

/// Publishes to and consumes from a Kafka-protocol cluster.
pub struct KafkaTransport {
    config: KafkaConfig,
    client_id: String,
    producer: FutureProducer,
}

impl KafkaTransport {
    /// Connects a producer; `service` is appended to the client id so brokers' logs and quotas
    /// tell services apart.
    pub fn new(config: &KafkaConfig, service: &str) -> Result<Self, TransportError> {
        let client_id = format!("{}-{}", config.client_id, service);
        let producer: FutureProducer = client_config::producer(config, &client_id)
            .create()
            .map_err(|e| TransportError::kafka("create producer", e))?;
        Ok(Self {
            config: config.clone(),
            client_id,
            producer,
        })
    }

    /// Waits until every queued record is delivered; called on shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(|e| TransportError::kafka("flush", e))
    }

    /// The settings this transport was built with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), TransportError> {
        admin::ensure_topics(&self.config, &self.client_id, topics).await
    }

    fn enqueue(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<PendingDelivery, TransportError> {
        let mut record = record(topic, &message);
        let deadline = std::time::Instant::now()
            + Duration::from_millis(self.config.delivery_timeout_ms.into());
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                // The local queue is full: let librdkafka deliver some, then try again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if std::time::Instant::now() < deadline =>
                {
                    self.producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return Err(TransportError::kafka("publish", e)),
            }
        };
        Ok(Box::pin(async move {
            match delivery.await {
                Ok(Ok(d)) => Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => Err(TransportError::kafka("publish", e)),
                Err(_) => Err(TransportError::Timeout(
                    "producer dropped before delivery".into(),
                )),
            }
        }))
    }

    async fn publish(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<Delivered, TransportError> {
        self.enqueue(topic, message)?.await
    }

    async fn committed_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(crate::TopicPartition, i64)>, TransportError> {
        let config = self.config.clone();
        let client_id = format!("{}-offsets", self.client_id);
        let (group, topics) = (group.to_string(), topics.to_vec());
        tokio::task::spawn_blocking(move || lag::committed(&config, &client_id, &group, &topics))
            .await
            .map_err(|e| TransportError::Timeout(format!("offsets task failed: {e}")))?
    }

    async fn group_lag(&self, group: &str, topics: &[String]) -> Result<i64, TransportError> {
        let config = self.config.clone();
        let client_id = format!("{}-lag", self.client_id);
        let (group, topics) = (group.to_string(), topics.to_vec());
        tokio::task::spawn_blocking(move || lag::group_lag(&config, &client_id, &group, &topics))
            .await
            .map_err(|e| TransportError::Timeout(format!("lag task failed: {e}")))?
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let consumer = KafkaConsumer::subscribe(&self.config, &self.client_id, group, topics)?;
        Ok(Box::new(consumer))
    }
}
