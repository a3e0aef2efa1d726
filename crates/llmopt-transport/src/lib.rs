//! Moving records between services: publish, consume in a consumer group, commit.
//!
//! Service code is written once against [`Transport`] and [`Consumer`] and runs unchanged on
//! Kafka ([`kafka::KafkaTransport`], through rdkafka) or on the in-process log
//! ([`embedded::EmbeddedTransport`]) that lets `llmopt demo` run with no servers.
//!
//! Delivery is at-least-once, following rust-rdkafka's at-least-once example: a consumer
//! [`Consumer::ack`]s a message only once everything it produced from it is acknowledged by the
//! broker, and only acked offsets are ever committed.

mod config;
pub mod embedded;
mod error;
pub mod kafka;
mod message;
mod partitioner;
mod read_topic;
mod topics;

use std::time::Duration;

use async_trait::async_trait;

/// The acknowledgement of an enqueued record.
pub type PendingDelivery =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Delivered, TransportError>> + Send>>;

pub use config::{KafkaConfig, TransportConfig, TransportKind};
pub use error::TransportError;
pub use message::{Delivered, InboundMessage, OutboundMessage, PartitionProgress, TopicPartition};
pub use partitioner::murmur2_partition;
pub use read_topic::read_topic;
pub use topics::{LogicalTopic, TopicNames, TopicSpec};

/// Publishes records and hands out group consumers.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Creates the topics that do not exist yet; existing topics are left as they are.
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), TransportError>;

    /// Publishes one record and resolves once the broker has acknowledged it. Calls may run
    /// concurrently; records with the same key keep their order.
    async fn publish(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<Delivered, TransportError>;

    /// Hands a record to the producer now, in call order (so records of one key keep their
    /// order), and returns a future of the broker's acknowledgement. Lets a runner keep many
    /// records in flight instead of waiting for each acknowledgement in turn.
    fn enqueue(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<PendingDelivery, TransportError>;

    /// Publishes many records and resolves once all are acknowledged, in input order.
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<OutboundMessage>,
    ) -> Result<Vec<Delivered>, TransportError> {
        let sends = messages.into_iter().map(|m| self.publish(topic, m));
        futures::future::try_join_all(sends).await
    }

    /// Records of `topics` that consumer group `group` has not committed yet, summed over every
    /// partition (what `kafka-consumer-groups --describe` calls lag). Zero means the group has
    /// processed everything written so far.
    async fn group_lag(&self, group: &str, topics: &[String]) -> Result<i64, TransportError>;

    /// The offsets consumer group `group` has committed on `topics` (the next offset it will
    /// read), per partition; partitions it never committed are absent.
    async fn committed_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(TopicPartition, i64)>, TransportError>;

    /// Joins consumer group `group` on `topics`. Partitions are shared among the group's members
    /// and reading starts from the group's committed offsets (earliest when there are none).
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Consumer>, TransportError>;
}

/// A member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// The next record, or `None` if none arrived within `timeout`.
    async fn poll(&mut self, timeout: Duration) -> Result<Option<InboundMessage>, TransportError>;

    /// Marks `message` as processed: all outputs made from it are acknowledged. Its offset, and
    /// every earlier one of its partition, may now be committed.
    fn ack(&mut self, message: &InboundMessage) -> Result<(), TransportError>;

    /// Commits acked offsets to the group now, waiting for the coordinator's answer.
    async fn commit(&mut self) -> Result<(), TransportError>;

    /// Partitions this member currently owns.
    fn assignment(&self) -> Result<Vec<TopicPartition>, TransportError>;

    /// Records between this member's position and the end of each owned partition: the
    /// consumer lag operators alert on.
    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError>;

    /// Position and end of each owned partition as last known, without a broker round trip:
    /// what the runner judges backlog and idleness from. Stale by up to the statistics
    /// interval on Kafka; exact on the embedded log.
    async fn progress(&mut self) -> Result<Vec<PartitionProgress>, TransportError>;

    /// Partitions the group is taking away from this member and waiting for it to let go of
    /// ([`Consumer::release`]): the member still owns them, so it can finish what it read,
    /// checkpoint and commit first (Kafka's `onPartitionsRevoked`). Empty on transports whose
    /// group protocol moves partitions at once (the embedded log).
    fn revoking(&self) -> Vec<TopicPartition> {
        Vec::new()
    }

    /// Lets go of the partitions [`Consumer::revoking`] named, so the group's rebalance goes
    /// on. A no-op when nothing is being revoked (or a newer assignment superseded it).
    fn release(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Stops fetching the owned partitions while staying in the group (polls keep the member
    /// alive and return nothing from them): a long job runs meanwhile. Partitions assigned
    /// later arrive unpaused (librdkafka's rule), so a caller holding the pause pauses again
    /// when a record arrives.
    fn pause(&mut self) -> Result<(), TransportError>;

    /// Fetches the owned partitions again after [`Consumer::pause`].
    fn resume(&mut self) -> Result<(), TransportError>;

    /// Commits acked offsets and leaves the group, so its partitions move to other members at once.
    async fn close(self: Box<Self>) -> Result<(), TransportError>;
}
