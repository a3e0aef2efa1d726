//! A group member that owns partitions with records waiting but is never served them (seen on
//! tansu: assigned, ready, idle, nothing fetched) leaves its group and joins again, and then
//! processes everything; a member that is merely caught up never does.
//!
//! The stall is made by a transport that wraps a real one (the embedded log, and the broker the
//! test command started) and hands out, the first time only, a member that stays paused: it
//! owns its partitions and their records wait, but its polls return nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use async_trait::async_trait;
use llmopt_events::{samples, AnyEvent};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{shutdown, Input, NoEffects, Output, Processor};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{
    Consumer, Delivered, InboundMessage, KafkaConfig, LogicalTopic, OutboundMessage,
    PartitionProgress, PendingDelivery, TopicNames, TopicPartition, TopicSpec, Transport,
    TransportConfig, TransportError,
};

/// One anomaly per window.
struct Echo;

impl Processor for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Windows]
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        vec![Output {
            topic: LogicalTopic::Anomalies,
            id: format!("anomaly-{}", input.id),
            key: "checkout/summarize".into(),
            time_ms: 1,
            event: AnyEvent::Anomaly(samples::anomaly()),
        }]
    }
}

/// A transport whose first consumer is never served a record.
struct FirstMemberStalls {
    log: Arc<dyn Transport>,
    subscriptions: AtomicUsize,
    stall_first: bool,
}

/// A real member of the group, paused for good: it joins, owns its partitions and reports
/// their progress, but its polls find nothing. (On Kafka, partitions arrive unpaused inside a
/// poll: a record fetched before the next pause is dropped unacknowledged, so it is read
/// again after the rejoin.)
struct NeverServed(Box<dyn Consumer>);

#[async_trait]
impl Consumer for NeverServed {
    async fn poll(&mut self, timeout: Duration) -> Result<Option<InboundMessage>, TransportError> {
        self.0.pause()?;
        self.0.poll(timeout).await.map(|_| None)
    }
    fn ack(&mut self, message: &InboundMessage) -> Result<(), TransportError> {
        self.0.ack(message)
    }
    async fn commit(&mut self) -> Result<(), TransportError> {
        self.0.commit().await
    }
    fn assignment(&self) -> Result<Vec<TopicPartition>, TransportError> {
        self.0.assignment()
    }
    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        self.0.lag().await
    }
    async fn progress(&mut self) -> Result<Vec<PartitionProgress>, TransportError> {
        self.0.progress().await
    }
    fn pause(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        self.0.close().await
    }
}

#[async_trait]
impl Transport for FirstMemberStalls {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), TransportError> {
        self.log.ensure_topics(topics).await
    }
    async fn publish(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<Delivered, TransportError> {
        self.log.publish(topic, message).await
    }
    fn enqueue(
        &self,
        topic: &str,
        message: OutboundMessage,
    ) -> Result<PendingDelivery, TransportError> {
        self.log.enqueue(topic, message)
    }
    async fn group_lag(&self, group: &str, topics: &[String]) -> Result<i64, TransportError> {
        self.log.group_lag(group, topics).await
    }
    async fn committed_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        self.log.committed_offsets(group, topics).await
    }
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Consumer>, TransportError> {
        let member = self.log.subscribe(group, topics).await?;
        let first = self.subscriptions.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(if first && self.stall_first {
            Box::new(NeverServed(member))
        } else {
            member
        })
    }
}

const WINDOWS: usize = 40;

/// The broker the test command started (`scripts/test.sh` sets `LLMOPT_KAFKA_BOOTSTRAP`).
fn kafka() -> (Arc<dyn Transport>, TopicNames) {
    let bootstrap = std::env::var("LLMOPT_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("LLMOPT_KAFKA_BOOTSTRAP is not set: run the README's test command (scripts/test.sh), which starts a broker")
    });
    let kafka = KafkaConfig {
        bootstrap_servers: bootstrap,
        session_timeout_ms: 6000,
        ..KafkaConfig::default()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let names = TopicNames::new(&TransportConfig {
        topic_prefix: format!("stall-{}-{nanos}.", std::process::id()),
        partitions: 3,
        kafka: kafka.clone(),
        ..TransportConfig::default()
    });
    let transport = KafkaTransport::new(&kafka, "stall-test").expect("kafka transport");
    (Arc::new(transport), names)
}

fn embedded() -> (Arc<dyn Transport>, TopicNames) {
    (
        Arc::new(EmbeddedTransport::new(3)),
        TopicNames::new(&TransportConfig::default()),
    )
}

/// Runs [`Echo`] over `WINDOWS` windows on 3 partitions; returns (consumed, published, rejoins,
/// subscriptions).
async fn run(
    (log, names): (Arc<dyn Transport>, TopicNames),
    stall_first: bool,
    idle_polls: u32,
) -> (u64, u64, u64, usize) {
    let transport = Arc::new(FirstMemberStalls {
        log,
        subscriptions: AtomicUsize::new(0),
        stall_first,
    });
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    common::publish_windows(transport.as_ref(), &names, 0..WINDOWS).await;
    let metrics = Arc::new(ServiceMetrics::new("echo"));
    let runner = Runner::new(
        Echo,
        NoEffects,
        transport.clone(),
        names,
        metrics.clone(),
        Arc::new(Health::new()),
        RunnerConfig {
            poll_timeout: Duration::from_millis(10),
            // Empty polls end the run well past `stall_after`, so a caught-up member has
            // every chance to rejoin wrongly (on Kafka, past the group join too).
            stop_after_idle_polls: Some(idle_polls),
            stall_after: Duration::from_millis(300),
            ..RunnerConfig::default()
        },
    );
    let (_t, stop) = shutdown::channel();
    let (_, summary) = runner.run(stop).await.expect("run");
    (
        summary.consumed,
        summary.published,
        metrics.rejoins.get(),
        transport.subscriptions.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_member_never_served_its_partitions_rejoins_and_processes_everything() {
    let (consumed, published, rejoins, subscriptions) = run(embedded(), true, 100).await;
    assert_eq!((consumed, published), (WINDOWS as u64, WINDOWS as u64));
    assert_eq!((rejoins, subscriptions), (1, 2));
}

#[tokio::test]
async fn a_caught_up_member_never_rejoins() {
    let (consumed, published, rejoins, subscriptions) = run(embedded(), false, 100).await;
    assert_eq!((consumed, published), (WINDOWS as u64, WINDOWS as u64));
    assert_eq!((rejoins, subscriptions), (0, 1));
}

/// The same on the broker: the stalled member leaves (librdkafka's close of a paused member)
/// and a new one joins and is served everything. 10 s of empty polls end the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_member_never_served_its_partitions_rejoins_and_processes_everything() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (consumed, published, rejoins, subscriptions) = run(kafka(), true, 1000).await;
    assert_eq!((consumed, published), (WINDOWS as u64, WINDOWS as u64));
    assert_eq!((rejoins, subscriptions), (1, 2));
}
