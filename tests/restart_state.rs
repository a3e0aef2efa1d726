//! A stateful service restarted mid-stream rebuilds its state from its inputs (up to its
//! committed offsets) and continues exactly as if it had never stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig, Stage};
use llmopt_runtime::NoEffects;
use llmopt_sim::{FleetSpec, Scenario, SimEvent, Simulator};
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

fn telemetry(from_min: i64, to_min: i64) -> Vec<OutboundMessage> {
    let start = 1_767_225_600_000;
    let mut sim =
        Simulator::new(FleetSpec::default(), Scenario::default(), 11, start).expect("simulator");
    sim.advance(start + to_min * 60_000, &mut |_, _| None)
        .iter()
        .filter_map(|e| match e {
            SimEvent::Call { call, id, source } if call.event_time >= start + from_min * 60_000 => {
                let meta = EventMeta {
                    id: id.clone(),
                    source: source.clone(),
                    time_ms: Some(call.event_time),
                    partition_key: Some(e.key()),
                    ..EventMeta::default()
                };
                let m = wire::to_kafka(call, &meta, DataFormat::Avro).expect("encode");
                Some(OutboundMessage::from(m))
            }
            _ => None,
        })
        .collect()
}

async fn stage(
    transport: Arc<dyn Transport>,
    names: TopicNames,
    rebuild: bool,
) -> Stage<Aggregator, NoEffects> {
    runner(transport, names, rebuild)
        .start()
        .await
        .expect("start")
}

fn runner(
    transport: Arc<dyn Transport>,
    names: TopicNames,
    rebuild: bool,
) -> Runner<Aggregator, NoEffects> {
    Runner::new(
        Aggregator::new(AggregatorConfig::default()).expect("aggregator"),
        NoEffects,
        transport,
        names,
        Arc::new(ServiceMetrics::new("aggregator")),
        Arc::new(Health::new()),
        RunnerConfig {
            rebuild_state: rebuild,
            poll_timeout: Duration::from_millis(5),
            ..RunnerConfig::default()
        },
    )
}

async fn windows(transport: &dyn Transport, topic: &str) -> BTreeMap<String, Vec<u8>> {
    let mut consumer = transport
        .subscribe("reader", &[topic.to_string()])
        .await
        .expect("subscribe");
    let mut out = BTreeMap::new();
    while let Some(m) = consumer
        .poll(Duration::from_millis(20))
        .await
        .expect("poll")
    {
        let id = m
            .headers
            .iter()
            .find(|(k, _)| k == "ce_id")
            .and_then(|(_, v)| v.clone())
            .expect("id");
        assert!(
            out.insert(
                String::from_utf8_lossy(&id).into_owned(),
                m.value.unwrap_or_default()
            )
            .is_none(),
            "emitted twice"
        );
    }
    out
}

/// One partition, so the order of records is the same in every run.
async fn run(restart: bool) -> BTreeMap<String, Vec<u8>> {
    let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(1));
    let names = TopicNames::new(&TransportConfig {
        partitions: 1,
        ..TransportConfig::default()
    });
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");
    let input = names.name(LogicalTopic::Telemetry);
    transport
        .publish_batch(&input, telemetry(0, 20))
        .await
        .expect("first half");
    let mut first = stage(transport.clone(), names.clone(), true).await;
    first
        .drain(Duration::from_millis(5))
        .await
        .expect("first half processed");
    transport
        .publish_batch(&input, telemetry(20, 40))
        .await
        .expect("second half");
    if restart {
        first.stop().await.expect("stop");
        let mut second = stage(transport.clone(), names.clone(), true).await;
        second
            .drain(Duration::from_millis(5))
            .await
            .expect("second half processed");
        second.stop().await.expect("stop");
    } else {
        first
            .drain(Duration::from_millis(5))
            .await
            .expect("second half processed");
        first.stop().await.expect("stop");
    }
    windows(transport.as_ref(), &names.name(LogicalTopic::Windows)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_aggregator_continues_as_if_it_never_stopped() {
    let uninterrupted = run(false).await;
    let restarted = run(true).await;
    assert!(uninterrupted.len() > 200, "{} windows", uninterrupted.len());
    assert_eq!(restarted.len(), uninterrupted.len(), "same window events");
    assert_eq!(
        restarted, uninterrupted,
        "byte-identical window events across a restart"
    );
}

/// With per-partition checkpoints instead of a rebuild: the restarted stage restores them and
/// reads only what follows (bounded restart), with the same window events as an uninterrupted
/// run. Six partitions, so the checkpoint is really per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointed_aggregator_restores_and_reads_only_what_follows() {
    let run = |restart: bool| async move {
        let transport: Arc<dyn Transport> = Arc::new(EmbeddedTransport::new(6));
        let names = TopicNames::new(&TransportConfig::default());
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        transport
            .ensure_topics(&names.all_specs())
            .await
            .expect("topics");
        let input = names.name(LogicalTopic::Telemetry);
        let first_half = telemetry(0, 20);
        let first_len = first_half.len() as u64;
        transport
            .publish_batch(&input, first_half)
            .await
            .expect("first half");
        let start = || async {
            runner(transport.clone(), names.clone(), false)
                .with_checkpoints(store.clone())
                .start()
                .await
                .expect("start")
        };
        let mut first = start().await;
        first
            .drain(Duration::from_millis(5))
            .await
            .expect("first half processed");
        transport
            .publish_batch(&input, telemetry(20, 40))
            .await
            .expect("second half");
        let consumed_after_restart = if restart {
            // The first instance vanishes without a final commit or checkpoint beyond the
            // drain's; the next one restores the checkpoints.
            drop(first);
            let mut second = start().await;
            second
                .drain(Duration::from_millis(5))
                .await
                .expect("second half processed");
            let consumed = second.summary().consumed;
            second.stop().await.expect("stop");
            Some(consumed)
        } else {
            first
                .drain(Duration::from_millis(5))
                .await
                .expect("second half processed");
            first.stop().await.expect("stop");
            None
        };
        let windows = windows(transport.as_ref(), &names.name(LogicalTopic::Windows)).await;
        (windows, first_len, consumed_after_restart)
    };
    let (uninterrupted, _, _) = run(false).await;
    let (restarted, first_len, consumed) = run(true).await;
    let consumed = consumed.expect("restarted");
    assert!(uninterrupted.len() > 200, "{} windows", uninterrupted.len());
    assert_eq!(
        restarted, uninterrupted,
        "same window events across a restart"
    );
    assert!(
        consumed + first_len <= uninterrupted_input_len(),
        "the restarted stage read {consumed} records: the first {first_len} again"
    );
}

fn uninterrupted_input_len() -> u64 {
    telemetry(0, 40).len() as u64
}
