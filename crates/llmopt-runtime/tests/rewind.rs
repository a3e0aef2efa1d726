//! A rebalance that takes a partition away and gives it back to the same member between two
//! looks of the runner at the assignment makes the consumer start again at the committed
//! offset. The core already processed what follows it (its state has it), so those records are
//! acknowledged without being processed again: no input is counted twice into the same state.
//!
//! On the embedded log a member joining and leaving the group at once does exactly that; the
//! long checkpoint interval keeps the committed offsets at the start, so the rewind covers every
//! record the runner processed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{shutdown, Input, NoEffects, Output, PartitionState, Processor};
use llmopt_state::memory::MemoryStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{LogicalTopic, TopicNames, Transport, TransportConfig};

/// Counts how often an input lands in a partition's state that already holds it.
struct Counting {
    seen: BTreeMap<i32, BTreeSet<String>>,
    processed: Arc<AtomicUsize>,
    twice: Arc<AtomicUsize>,
}

impl Processor for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Windows]
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        self.processed.fetch_add(1, Ordering::SeqCst);
        if !self
            .seen
            .entry(input.partition)
            .or_default()
            .insert(input.id.clone())
        {
            self.twice.fetch_add(1, Ordering::SeqCst);
        }
        Vec::new()
    }

    fn on_partition(
        &mut self,
        _topic: LogicalTopic,
        partition: i32,
        state: PartitionState,
    ) -> Vec<Output> {
        if state == PartitionState::Revoked {
            self.seen.remove(&partition);
        }
        Vec::new()
    }

    fn checkpoint(&self, _topic: LogicalTopic, partition: i32) -> Option<Vec<u8>> {
        let ids: Vec<&str> = self
            .seen
            .get(&partition)?
            .iter()
            .map(String::as_str)
            .collect();
        Some(ids.join("\n").into_bytes())
    }

    fn restore(
        &mut self,
        _topic: LogicalTopic,
        partition: i32,
        state: &[u8],
    ) -> Result<(), String> {
        let text = std::str::from_utf8(state).map_err(|e| e.to_string())?;
        self.seen
            .entry(partition)
            .or_default()
            .extend(text.lines().map(str::to_string));
        Ok(())
    }
}

const WINDOWS: usize = 30;

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_redelivered_to_the_same_member_after_a_rebalance_are_not_processed_twice() {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(3));
    let names = TopicNames::new(&TransportConfig::default());
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    common::publish_windows(transport.as_ref(), &names, 0..WINDOWS).await;

    let processed = Arc::new(AtomicUsize::new(0));
    let twice = Arc::new(AtomicUsize::new(0));
    let core = Counting {
        seen: BTreeMap::new(),
        processed: processed.clone(),
        twice: twice.clone(),
    };
    let metrics = Arc::new(ServiceMetrics::new("counting"));
    let runner = Runner::new(
        core,
        NoEffects,
        transport.clone(),
        names.clone(),
        metrics.clone(),
        Arc::new(Health::new()),
        RunnerConfig {
            poll_timeout: Duration::from_millis(5),
            // Nothing is checkpointed, so nothing is committed: a rewind starts at offset 0.
            checkpoint_interval: Duration::from_secs(3600),
            ..RunnerConfig::default()
        },
    )
    .with_checkpoints(Arc::new(MemoryStore::new()));
    let (stop, signal) = shutdown::channel();
    let task = tokio::spawn(async move { runner.run(signal).await });
    wait_for("the first records", || {
        processed.load(Ordering::SeqCst) >= WINDOWS
    })
    .await;

    // Another member joins and leaves before the group settles (a pod that crashes at start):
    // two rebalances, after which the runner owns every partition again from the committed
    // offsets. The runner looks at its assignment every 200 ms; if it happens to look between
    // the two rebalances it sees its partitions revoked (the core drops their state and reads
    // them again, no rewind), so the visit is repeated until a rewind happened. The visitor
    // does not poll: a visitor that waited for its share kept the runner's partitions away for
    // that long, and on a loaded machine every look of the runner fell inside the visit.
    let group = names.group("counting");
    let topics = vec![names.name(LogicalTopic::Windows)];
    let mut published = WINDOWS;
    for _ in 0..20 {
        let visitor = transport.subscribe(&group, &topics).await.expect("join");
        visitor.close().await.expect("leave");
        common::publish_windows(transport.as_ref(), &names, published..published + 3).await;
        published += 3;
        let at_least = published;
        wait_for("the later records", || {
            processed.load(Ordering::SeqCst) >= at_least
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if metrics.rewinds.get() > 0 {
            break;
        }
    }
    stop.trigger();
    task.await.expect("task").expect("runner");
    assert!(metrics.rewinds.get() > 0, "no visit rewound the partitions");
    assert_eq!(
        twice.load(Ordering::SeqCst),
        0,
        "inputs processed twice into the same state"
    );
}
