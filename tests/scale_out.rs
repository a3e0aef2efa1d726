//! Scale-out and scale-in of the aggregator: three instances in one consumer group share six
//! partitions while the fleet's telemetry streams in; one crashes for good a third of the way
//! (its partitions move to the survivors, which restore their checkpoints and re-read what
//! follows them), a new one joins at two thirds (partitions move again, with their
//! checkpoints). The final content of every window equals a single instance's live run, and no
//! event goes late.
//!
//! Runs on the embedded log (its group protocol moves partitions at once), about 120× faster
//! than real time, and on the broker the test command started (where each move waits for the
//! group to rebalance, seconds in which the moved partitions' records wait), about 240× faster
//! than real time; both with the default 60 s of allowed lateness. Windows close per input partition, and a moved
//! partition keeps its closing watermark but not the old owner's operator watermark
//! (`services/aggregator/tests/backlog.rs` checks a move between instances far apart in event
//! time), so no window is emitted early: every window is emitted once, at revision 0.
//!
//! This test found a runner bug: a partition read past the end known from the runner's last
//! look (every 200 ms) was judged caught up while records waited. Reading a burst record by
//! record across partitions, one with five keys fell five minutes of event time behind one with
//! a single key, was taken for idle, and a fifth of all windows were emitted early and revised
//! (about 2,000 calls went late).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{http_get, wait_for, Installation, ServiceProcess};
use common::windows;
use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::WindowAggregate;
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{RunSummary, Runner, RunnerConfig};
use llmopt_runtime::shutdown::{self, ShutdownTrigger};
use llmopt_runtime::{
    Input, NoEffects, Output, PartitionState, Processor, RuntimeError, StateScope,
};
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, TopicNames, Transport, TransportConfig};
use tokio::task::JoinHandle;

/// One running aggregator instance.
struct Instance {
    health: Arc<Health>,
    stop: ShutdownTrigger,
    task: JoinHandle<Result<RunSummary, RuntimeError>>,
}

fn start(
    transport: &Arc<dyn Transport>,
    names: &TopicNames,
    store: &Arc<dyn StateStore>,
    config: &AggregatorConfig,
) -> Instance {
    let health = Arc::new(Health::new());
    let runner = Runner::new(
        Aggregator::new(config.clone()).expect("aggregator"),
        NoEffects,
        transport.clone(),
        names.clone(),
        Arc::new(ServiceMetrics::new("aggregator")),
        health.clone(),
        RunnerConfig {
            poll_timeout: Duration::from_millis(5),
            checkpoint_interval: Duration::from_millis(100),
            ..RunnerConfig::default()
        },
    )
    .with_checkpoints(store.clone());
    let (stop, signal) = shutdown::channel();
    let task = tokio::spawn(async move { Ok(runner.run(signal).await?.1) });
    Instance { health, stop, task }
}

/// Waits until the group has committed everything (which it does only with checkpoints of
/// everything processed: no partition is left between owners mid-rebalance), every instance is
/// caught up and nothing was handled for half a second.
async fn settle(instances: &[Instance], transport: &dyn Transport, names: &TopicNames) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let group = names.group("aggregator");
    let inputs = vec![names.name(LogicalTopic::Telemetry)];
    let handled = || instances.iter().map(|i| i.health.handled()).sum::<u64>();
    let mut last = handled();
    let mut quiet_since = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "the instances never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = handled();
        let lag = transport.group_lag(&group, &inputs).await.unwrap_or(-1);
        if now != last || lag != 0 || !instances.iter().all(|i| i.health.is_idle()) {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_millis(500) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregators_scaled_out_and_in_give_the_single_instance_windows() {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(windows::PARTITIONS));
    let names = TopicNames::new(&TransportConfig {
        partitions: windows::PARTITIONS,
        ..TransportConfig::default()
    });
    // About 120× real time: 1,000 calls are 36 s of event time.
    scale_out_and_in(transport, names, 1_000, AggregatorConfig::default()).await;
}

/// Topic names under `prefix` (six partitions) and a client of the test broker.
fn on_kafka(prefix: &str) -> (TopicNames, Arc<dyn Transport>) {
    let config = TransportConfig {
        topic_prefix: prefix.to_string(),
        partitions: windows::PARTITIONS,
        kafka: common::kafka_config(),
        ..TransportConfig::default()
    };
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&config.kafka, "scale-out-test").expect("transport"));
    (TopicNames::new(&config), transport)
}

/// The same on the broker, where every move waits for a rebalance (a few seconds on tansu).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_aggregators_scaled_out_and_in_give_the_single_instance_windows() {
    let (names, transport) = on_kafka(&format!("{}.", common::unique("scale-out")));
    // About 240× real time: 2,000 calls are 72 s of event time. The event-time idle rule is
    // scaled with the pace: 5 minutes of event time would be 1.25 s here, less than the
    // broker's fetch jitter between partitions (a partition whose fetch came back empty while
    // its records were on their way counts as caught up, and another raced 5 minutes ahead of
    // it). An hour of event time is 15 s here.
    let config = AggregatorConfig {
        idle_timeout_ms: 3_600_000,
        ..AggregatorConfig::default()
    };
    scale_out_and_in(transport, names, 2_000, config).await;
}

/// Three instances, one crashed for good a third of the way, one added at two thirds, the
/// calls published in chunks of `chunk` every 300 ms; the final windows must be the single
/// instance's, each emitted once, nothing late.
async fn scale_out_and_in(
    transport: Arc<dyn Transport>,
    names: TopicNames,
    chunk: usize,
    config: AggregatorConfig,
) {
    let calls = windows::calls();
    let (expected, live_late) = windows::live_with(&calls, config.clone());
    assert_eq!(live_late, 0, "the input is on time");

    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let input = names.name(LogicalTopic::Telemetry);

    let mut instances: Vec<Instance> = (0..3)
        .map(|_| start(&transport, &names, &store, &config))
        .collect();
    let records = windows::records(&calls);
    let chunks: Vec<_> = records.chunks(chunk).collect();
    let (crash_at, join_at) = (chunks.len() / 3, 2 * chunks.len() / 3);
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i == crash_at {
            // Killed for good: no final checkpoint, no commit.
            let victim = instances.remove(1);
            victim.task.abort();
            let _ = victim.task.await;
        }
        if i == join_at {
            instances.push(start(&transport, &names, &store, &config));
        }
        transport
            .publish_batch(&input, chunk.to_vec())
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    settle(&instances, transport.as_ref(), &names).await;
    let mut consumed = Vec::new();
    for instance in instances {
        instance.stop.trigger();
        let summary = instance.task.await.expect("task").expect("runner");
        consumed.push(summary.consumed);
    }
    // The instance that joined last was handed partitions the others held (and the crashed
    // one's partitions were taken over, or their windows would be missing below).
    assert!(
        consumed.iter().all(|c| *c > 0),
        "calls consumed by the survivors and the newcomer: {consumed:?}"
    );

    assert_single_instance_windows(expected, transport.as_ref(), &names).await;
}

/// The windows and late records the scaled instances published against a single instance's
/// windows: the same final content for every window, each emitted once, nothing late.
async fn assert_single_instance_windows(
    expected: BTreeMap<String, WindowAggregate>,
    transport: &dyn Transport,
    names: &TopicNames,
) {
    let late_events = windows::read_all(transport, &names.name(LogicalTopic::TelemetryLate)).await;
    for event in late_events.iter().take(5) {
        if let llmopt_events::AnyEvent::LlmCall(call) = event {
            eprintln!("late: {}/{} at {}", call.app, call.route, call.event_time);
        }
    }
    let late = late_events.len();
    let produced = windows::window_contents(
        windows::read_all(transport, &names.name(LogicalTopic::Windows)).await,
    );
    assert_eq!(late, 0, "events sent to the late topic");
    // A window emitted early and then revised would differ in its revision number.
    let revised = produced.values().filter(|w| w.revision > 0).count();
    assert_eq!(revised, 0, "windows emitted early and revised");
    let final_content = |mut w: WindowAggregate| {
        w.revision = 0;
        w.id = w.window_id.clone();
        w
    };
    let expected: BTreeMap<String, WindowAggregate> = expected
        .into_iter()
        .map(|(id, w)| (id, final_content(w)))
        .collect();
    let produced: BTreeMap<String, WindowAggregate> = produced
        .into_iter()
        .map(|(id, w)| (id, final_content(w)))
        .collect();
    assert_eq!(produced.len(), expected.len(), "same windows");
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(id, w)| produced.get(*id) != Some(*w))
        .map(|(id, _)| id)
        .collect();
    if let Some(id) = differing.first() {
        eprintln!("single instance: {:?}", expected[*id]);
        eprintln!("scaled:          {:?}", produced.get(*id));
    }
    assert!(
        differing.is_empty(),
        "{} windows differ from the single-instance run, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}

/// A core that counts each partition's records slowly (about 1.5 ms each), so an instance
/// working through a backlog never goes idle, and so never checkpoints on its own before the
/// test's one-hour checkpoint interval: whatever the next owner does not re-read was covered
/// by the checkpoint taken when the partition was revoked.
struct SlowCounter {
    counts: BTreeMap<i32, u64>,
    processed: Arc<AtomicU64>,
    /// Each partition's count as of its newest record, whichever instance processed it: the
    /// final counts even when a partition is revoked (its state dropped) while the instances
    /// stop one after the other.
    latest: Arc<std::sync::Mutex<BTreeMap<i32, u64>>>,
}

impl Processor for SlowCounter {
    fn name(&self) -> &'static str {
        "handover-counter"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Telemetry]
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        let until = Instant::now() + Duration::from_micros(1_500);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let count = self.counts.entry(input.partition).or_default();
        *count += 1;
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(input.partition, *count);
        }
        self.processed.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }

    fn on_partition(
        &mut self,
        _: LogicalTopic,
        partition: i32,
        state: PartitionState,
    ) -> Vec<Output> {
        if state == PartitionState::Revoked {
            self.counts.remove(&partition);
        }
        Vec::new()
    }

    fn checkpoint(&self, _: LogicalTopic, partition: i32) -> Option<Vec<u8>> {
        Some(
            self.counts
                .get(&partition)
                .copied()
                .unwrap_or(0)
                .to_le_bytes()
                .to_vec(),
        )
    }

    fn restore(&mut self, _: LogicalTopic, partition: i32, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "not a count".to_string())?;
        self.counts.insert(partition, u64::from_le_bytes(bytes));
        Ok(())
    }
}

/// A second instance joining takes half the partitions from the first while the first is in
/// the middle of a backlog: the first finishes what it read, checkpoints and commits before
/// letting go, so no record is processed twice and the moved counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_revoked_partition_is_handed_over_at_the_last_record_processed() {
    let (names, transport) = on_kafka(&format!("{}.", common::unique("handover")));
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let calls: Vec<_> = windows::calls().into_iter().take(6_000).collect();
    let published = calls.len() as u64;
    transport
        .publish_batch(
            &names.name(LogicalTopic::Telemetry),
            windows::records(&calls),
        )
        .await
        .expect("publish");

    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let processed = Arc::new(AtomicU64::new(0));
    let latest = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let start_counter = || {
        let metrics = Arc::new(ServiceMetrics::new("handover-counter"));
        let health = Arc::new(Health::new());
        let runner = Runner::new(
            SlowCounter {
                counts: BTreeMap::new(),
                processed: processed.clone(),
                latest: latest.clone(),
            },
            NoEffects,
            transport.clone(),
            names.clone(),
            metrics.clone(),
            health.clone(),
            RunnerConfig {
                poll_timeout: Duration::from_millis(5),
                checkpoint_interval: Duration::from_secs(3_600),
                ..RunnerConfig::default()
            },
        )
        .with_checkpoints(store.clone());
        let (stop, signal) = shutdown::channel();
        let task = tokio::spawn(runner.run(signal));
        (metrics, health, stop, task)
    };

    let first = start_counter();
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed.load(Ordering::SeqCst) < 1_000 {
        assert!(
            Instant::now() < deadline,
            "the first instance never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = start_counter();
    let mut quiet_since = Instant::now();
    let mut last = processed.load(Ordering::SeqCst);
    loop {
        assert!(
            Instant::now() < deadline,
            "the instances never caught up: {} of {published} processed",
            processed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = processed.load(Ordering::SeqCst);
        if now != last || !(first.1.is_idle() && second.1.is_idle()) {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }

    let mut consumed = Vec::new();
    let mut handed_over = Vec::new();
    for (metrics, _, stop, task) in [first, second] {
        stop.trigger();
        let (_, summary) = task.await.expect("task").expect("runner");
        consumed.push(summary.consumed);
        handed_over.push(metrics.handovers.get());
    }
    assert!(
        consumed.iter().all(|c| *c > 0),
        "both instances processed records: {consumed:?}"
    );
    let counted: u64 = latest.lock().expect("counts").values().sum();
    assert_eq!(
        counted, published,
        "the partitions' counts add up to the records"
    );
    assert_eq!(
        processed.load(Ordering::SeqCst),
        published,
        "records processed more than once: the revoked partitions were not checkpointed at the last record read"
    );
    assert!(
        handed_over[0] > 0,
        "the first instance handed partitions over: {handed_over:?}"
    );
}

/// A core with one state across all its partitions ([`StateScope::Whole`], like the detector,
/// decision and actuator): it counts every record.
struct WholeCounter {
    count: u64,
    processed: Arc<AtomicU64>,
}

impl Processor for WholeCounter {
    fn name(&self) -> &'static str {
        "whole-counter"
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Telemetry]
    }

    fn process(&mut self, _: &Input) -> Vec<Output> {
        self.count += 1;
        self.processed.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }

    fn state_scope(&self) -> StateScope {
        StateScope::Whole
    }

    fn checkpoint_whole(&self) -> Option<Vec<u8>> {
        Some(self.count.to_le_bytes().to_vec())
    }

    fn restore_whole(&mut self, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "not a count".to_string())?;
        self.count = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Two replicas of a single-instance service: the second waits as a standby outside the
/// consumer group while the first leads, and takes over (with the leader's checkpoint) once
/// the leader crashed and stopped renewing its lease. Every record is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_a_crashed_single_instance_service() {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(windows::PARTITIONS));
    let names = TopicNames::new(&TransportConfig {
        partitions: windows::PARTITIONS,
        ..TransportConfig::default()
    });
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let input = names.name(LogicalTopic::Telemetry);
    let records = windows::records(&windows::calls()[..6_000]);
    let (before, after) = records.split_at(3_000);

    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let processed = Arc::new(AtomicU64::new(0));
    let lease = Duration::from_millis(600);
    let start_replica = |id: &str| {
        let metrics = Arc::new(ServiceMetrics::new("whole-counter"));
        let health = Arc::new(Health::new());
        let runner = Runner::new(
            WholeCounter {
                count: 0,
                processed: processed.clone(),
            },
            NoEffects,
            transport.clone(),
            names.clone(),
            metrics.clone(),
            health.clone(),
            RunnerConfig {
                poll_timeout: Duration::from_millis(5),
                checkpoint_interval: Duration::from_millis(100),
                leader_lease: lease,
                instance_id: Some(id.to_string()),
                ..RunnerConfig::default()
            },
        )
        .with_checkpoints(store.clone());
        let (stop, signal) = shutdown::channel();
        let task = tokio::spawn(runner.run(signal));
        (metrics, health, stop, task)
    };
    transport
        .publish_batch(&input, before.to_vec())
        .await
        .expect("publish");
    let leader = start_replica("replica-a");
    // The leader is leading before the standby starts, so which one leads is not a race.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed.load(Ordering::SeqCst) < 3_000 || !leader.1.is_idle() {
        assert!(Instant::now() < deadline, "the leader never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let standby = start_replica("replica-b");
    tokio::time::sleep(3 * lease).await;
    assert_eq!(leader.0.leading.get(), 1, "the first replica leads");
    assert_eq!(standby.0.leading.get(), 0, "the second replica waits");
    assert!(
        standby.1.is_standby() && standby.1.is_ready(),
        "a standby reports itself ready as a standby (a rollout can go on)"
    );
    assert_eq!(
        processed.load(Ordering::SeqCst),
        3_000,
        "the standby consumed nothing"
    );

    // The leader crashes: no final checkpoint, no goodbye, its lease is left to expire.
    let crashed_at = Instant::now();
    leader.3.abort();
    let _ = leader.3.await;
    transport
        .publish_batch(&input, after.to_vec())
        .await
        .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed.load(Ordering::SeqCst) < 6_000 || !standby.1.is_idle() {
        assert!(
            Instant::now() < deadline,
            "the standby never took over: {} processed",
            processed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = crashed_at.elapsed();
    assert_eq!(standby.0.leading.get(), 1, "the standby leads");
    assert!(
        !standby.1.is_standby(),
        "the new leader is no standby any more"
    );
    standby.2.trigger();
    let (core, _) = standby.3.await.expect("task").expect("runner");
    assert_eq!(
        core.count, 6_000,
        "the leader's count restored and every new record counted"
    );
    assert_eq!(
        processed.load(Ordering::SeqCst),
        6_000,
        "records counted more than once"
    );
    // The leader renews every third of its lease, so its last renewal was at most that long
    // before the crash.
    assert!(
        took_over >= lease * 2 / 3,
        "took over {took_over:?} after the crash, before the lease ({lease:?}) expired"
    );
}

/// Inputs an `llmopt run` process consumed, and whether its last poll found every owned
/// partition at its end, from its `/metrics`.
fn consumed_and_idle(service: &ServiceProcess) -> (u64, bool) {
    let metrics = service.metrics();
    let values = |name: &'static str| -> Vec<f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect()
    };
    let consumed = values("llmopt_events_in_total").iter().sum::<f64>() as u64;
    let idle = values("llmopt_consumer_idle").contains(&1.0);
    (consumed, idle)
}

/// The same scale-out and scale-in with `llmopt run aggregator` processes on the broker and
/// Redis: three share the group, one is killed with SIGKILL a third of the way and never comes
/// back (its partitions move only once its session times out, and the survivors restore its
/// last checkpoints and re-read what follows them), a new process joins at two thirds. The final
/// windows are the single instance's, each emitted once, nothing late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_processes_killed_and_added_give_the_single_instance_windows() {
    let config = AggregatorConfig {
        idle_timeout_ms: 3_600_000,
        ..AggregatorConfig::default()
    };
    let install = Installation::new(
        "scale-processes",
        "[transport]\npartitions = 6\n\n[transport.kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n\n\
         [aggregator]\nidle_timeout_ms = 3600000\n\n[runtime]\ncheckpoint_interval_ms = 1000\n",
    );
    let calls: Vec<_> = windows::calls().into_iter().take(60_000).collect();
    let (expected, live_late) = windows::live_with(&calls, config);
    assert_eq!(live_late, 0, "the input is on time");

    let (names, transport) = on_kafka(&install.prefix);
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let input = names.name(LogicalTopic::Telemetry);
    let records = windows::records(&calls);
    let chunks: Vec<_> = records.chunks(1_000).collect();
    // The processes join while every partition is empty: a partition that has delivered
    // nothing yet is judged by its own event time, so the first burst, 7 minutes of event time
    // fetched one partition after another, makes nothing late.
    let mut instances: Vec<ServiceProcess> = (0..3)
        .map(|_| install.spawn_service("aggregator", &[]))
        .collect();
    for instance in &instances {
        instance.wait_ready(Duration::from_secs(60));
    }

    let (crash_at, join_at) = (chunks.len() / 3, 2 * chunks.len() / 3);
    let mut victim_consumed = 0;
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i == crash_at {
            let mut victim = instances.remove(1);
            victim_consumed = consumed_and_idle(&victim).0;
            victim.kill_9();
        }
        if i == join_at {
            instances.push(install.spawn_service("aggregator", &[]));
        }
        transport
            .publish_batch(&input, chunk.to_vec())
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Settled: the group committed everything (which it does only with checkpoints of
    // everything processed), every process found its partitions at their end and nothing was
    // consumed for two seconds.
    let group = names.group("aggregator");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "the processes never caught up: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: Vec<(u64, bool)> = instances.iter().map(consumed_and_idle).collect();
        let lag = transport
            .group_lag(&group, std::slice::from_ref(&input))
            .await
            .unwrap_or(-1);
        if now != last || lag != 0 || !now.iter().all(|(_, idle)| *idle) {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(2) {
            break;
        }
    }
    assert!(
        victim_consumed > 0,
        "the killed process had consumed records"
    );
    assert!(
        last.iter().all(|(consumed, _)| *consumed > 0),
        "every process still running consumed records (the newcomer got partitions): {last:?}"
    );
    assert_single_instance_windows(expected, transport.as_ref(), &names).await;
    for instance in instances {
        let log = instance.stop();
        assert!(!log.contains("fenced off"), "{log}");
    }
}

/// The chart's hot standby, as processes on the broker and Redis: a second `llmopt run
/// detector` under another instance id answers `/ready` with 200 and the body `standby` (so a
/// rollout or a disruption budget counts it as available) and does not lead; once the leader is
/// killed with SIGKILL it takes over when the lease runs out, and then answers `ready` and leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_detector_process_is_ready_as_a_standby_and_leads_after_the_leader_is_killed() {
    let install = Installation::new(
        "standby-process",
        "[transport]\npartitions = 2\n\n[runtime]\nleader_lease_ms = 3000\n",
    );
    let (names, transport) = on_kafka(&install.prefix);
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let leading = |service: &ServiceProcess| -> Option<f64> {
        service
            .metrics()
            .lines()
            .find(|l| l.starts_with("llmopt_leader"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let ready_body = |service: &ServiceProcess| http_get(service.port, "/ready");

    let mut leader = install.spawn_service("detector", &[("LLMOPT_INSTANCE_ID", "detector-a")]);
    leader.wait_ready(Duration::from_secs(60));
    assert_eq!(leading(&leader), Some(1.0), "the first replica leads");
    let standby = install.spawn_service("detector", &[("LLMOPT_INSTANCE_ID", "detector-b")]);
    standby.wait_ready(Duration::from_secs(60));
    assert_eq!(
        ready_body(&standby),
        Some((200, "standby".to_string())),
        "the second replica is ready as a standby"
    );
    assert_eq!(leading(&standby), Some(0.0), "the standby does not lead");
    assert_eq!(ready_body(&leader), Some((200, "ready".to_string())));

    leader.kill_9();
    let killed_at = Instant::now();
    wait_for("the standby to lead", Duration::from_secs(60), || {
        leading(&standby) == Some(1.0) && ready_body(&standby) == Some((200, "ready".to_string()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&standby.log).unwrap_or_default()
        )
    });
    let took_over = killed_at.elapsed();
    assert!(
        took_over >= Duration::from_millis(2_000),
        "the standby waited for the lease to run out (3 s, judged from its last look): {took_over:?}"
    );
    let log = standby.stop();
    assert!(log.contains("taking over"), "{log}");
}
