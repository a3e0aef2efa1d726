//! Scale-out and scale-in of the aggregator: three instances in one consumer group share six
//! partitions while the fleet's telemetry streams in; one crashes for good a third of the way
//! (its partitions move to the survivors, which restore their checkpoints and re-read what
//! follows them), a new one joins at two thirds (partitions move again, with their
//! checkpoints). The final content of every window equals a single instance's live run, and no
//! event goes late.
//!
//! Runs on the embedded log (its group protocol moves partitions at once; on Kafka the same
//! runner code waits out the broker's session timeout), about 120× faster than real time, with
//! the default 60 s of allowed lateness. Windows close per input partition, and a moved
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::windows;
use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::WindowAggregate;
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{RunSummary, Runner, RunnerConfig};
use llmopt_runtime::shutdown::{self, ShutdownTrigger};
use llmopt_runtime::{NoEffects, RuntimeError};
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{LogicalTopic, TopicNames, Transport, TransportConfig};
use tokio::task::JoinHandle;

/// The default configuration (60 s of allowed lateness).
fn config() -> AggregatorConfig {
    AggregatorConfig::default()
}

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
) -> Instance {
    let health = Arc::new(Health::new());
    let runner = Runner::new(
        Aggregator::new(config()).expect("aggregator"),
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

/// Waits until every instance is caught up and nothing was handled for half a second.
async fn settle(instances: &[Instance]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let handled = || instances.iter().map(|i| i.health.handled()).sum::<u64>();
    let mut last = handled();
    let mut quiet_since = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "the instances never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = handled();
        if now != last || !instances.iter().all(|i| i.health.is_idle()) {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_millis(500) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregators_scaled_out_and_in_give_the_single_instance_windows() {
    let calls = windows::calls();
    let (expected, live_late) = windows::live_with(&calls, config());
    assert_eq!(live_late, 0, "the input is on time");

    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(windows::PARTITIONS));
    let names = TopicNames::new(&TransportConfig {
        partitions: windows::PARTITIONS,
        ..TransportConfig::default()
    });
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let input = names.name(LogicalTopic::Telemetry);

    let mut instances: Vec<Instance> = (0..3).map(|_| start(&transport, &names, &store)).collect();
    let records = windows::records(&calls);
    let chunks: Vec<_> = records.chunks(1000).collect();
    let (crash_at, join_at) = (chunks.len() / 3, 2 * chunks.len() / 3);
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i == crash_at {
            // Killed for good: no final checkpoint, no commit.
            let victim = instances.remove(1);
            victim.task.abort();
            let _ = victim.task.await;
        }
        if i == join_at {
            instances.push(start(&transport, &names, &store));
        }
        transport
            .publish_batch(&input, chunk.to_vec())
            .await
            .expect("publish");
        // About 120× real time: 1,000 calls are 36 s of event time.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    settle(&instances).await;
    let mut consumed = 0;
    for instance in instances {
        instance.stop.trigger();
        let summary = instance.task.await.expect("task").expect("runner");
        consumed += summary.consumed;
    }
    assert!(consumed > 0);

    let late = windows::read_all(transport.as_ref(), &names.name(LogicalTopic::TelemetryLate))
        .await
        .len();
    let produced = windows::window_contents(
        windows::read_all(transport.as_ref(), &names.name(LogicalTopic::Windows)).await,
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
