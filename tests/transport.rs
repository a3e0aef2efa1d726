//! Acceptance tests of the transport: the same test bodies run on the real broker (through
//! rdkafka) and on the embedded log.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, LlmCall, SchemaRegistry};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{
    Consumer, InboundMessage, OutboundMessage, TopicPartition, TopicSpec, Transport,
};

fn kafka() -> Arc<dyn Transport> {
    Arc::new(
        KafkaTransport::new(&common::kafka_config(), "transport-test").expect("kafka transport"),
    )
}

fn embedded() -> Arc<dyn Transport> {
    Arc::new(EmbeddedTransport::new(4))
}

/// The `n`-th telemetry event as llmopt writes it: an Avro CloudEvent in binary mode.
fn telemetry_record(n: u64) -> OutboundMessage {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("evt-{n}"),
        source: "/tests/transport".into(),
        time_ms: Some(call.event_time),
        partition_key: Some(call.request_id.clone()),
        traceparent: Some(format!("00-{:032x}-{:016x}-01", n + 1, n + 1)),
        subject: None,
    };
    let kafka = wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode");
    OutboundMessage {
        key: kafka.key,
        value: kafka.value,
        headers: kafka.headers,
        timestamp_ms: Some(call.event_time),
    }
}

/// Decodes a consumed record and checks it is exactly the event that was published.
fn check_content(message: &InboundMessage, registry: &SchemaRegistry) -> u64 {
    let kafka = llmopt_cloudevents::KafkaMessage {
        key: message.key.clone(),
        headers: message.headers.clone(),
        value: message.value.clone(),
    };
    let (ce, _, call) = wire::decode_kafka::<LlmCall>(&kafka, &Default::default(), registry)
        .expect("consumed record decodes");
    let n: u64 = ce
        .id
        .trim_start_matches("evt-")
        .parse()
        .expect("id is evt-N");
    assert_eq!(call, samples::llm_call(n), "content of evt-{n}");
    assert_eq!(
        ce.traceparent(),
        Some(format!("00-{:032x}-{:016x}-01", n + 1, n + 1).as_str())
    );
    n
}

/// Publishes events `range` and returns each partition's end offset.
async fn publish_all(
    transport: &dyn Transport,
    topic: &str,
    range: std::ops::Range<u64>,
) -> BTreeMap<i32, i64> {
    let ids: Vec<u64> = range.collect();
    let mut ends = BTreeMap::new();
    for chunk in ids.chunks(5000) {
        let batch = chunk.iter().map(|n| telemetry_record(*n)).collect();
        for d in transport
            .publish_batch(topic, batch)
            .await
            .expect("publish batch")
        {
            let end = ends.entry(d.partition).or_insert(0);
            *end = (*end).max(d.offset + 1);
        }
    }
    ends
}

/// Polls every consumer until the group has settled: each member owns partitions and together
/// they own all of them. Nothing has been published yet, so polls return nothing.
async fn settle(consumers: &mut [Box<dyn Consumer>], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for c in consumers.iter_mut() {
            assert!(c
                .poll(Duration::from_millis(100))
                .await
                .expect("poll")
                .is_none());
        }
        let owned: Vec<Vec<TopicPartition>> = consumers
            .iter()
            .map(|c| c.assignment().expect("assignment"))
            .collect();
        let total: HashSet<&TopicPartition> = owned.iter().flatten().collect();
        if owned.iter().all(|o| !o.is_empty()) && total.len() == partitions {
            return;
        }
        assert!(Instant::now() < deadline, "group did not settle: {owned:?}");
    }
}

async fn hundred_thousand_events_two_members(transport: Arc<dyn Transport>) {
    const N: u64 = 100_000;
    const PARTITIONS: i32 = 4;
    let topic = common::unique("llmopt.test.telemetry");
    let group = common::unique("group");
    transport
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: PARTITIONS,
        }])
        .await
        .expect("create topic");
    let mut members = vec![
        transport
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("member a"),
        transport
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .expect("member b"),
    ];
    settle(&mut members, PARTITIONS as usize).await;

    publish_all(transport.as_ref(), &topic, 0..N).await;

    let received = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut member in members {
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let registry = SchemaRegistry::current();
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while received.load(Ordering::SeqCst) < N as usize && Instant::now() < deadline {
                let Some(message) = member.poll(Duration::from_millis(200)).await.expect("poll")
                else {
                    continue;
                };
                seen.push(check_content(&message, &registry));
                member.ack(&message).expect("ack");
                if received.fetch_add(1, Ordering::SeqCst) % 1000 == 999 {
                    member.commit().await.expect("commit");
                }
            }
            member.commit().await.expect("commit");
            (member, seen)
        }));
    }
    // Members leave only once both are done: a member leaving makes the other give up its
    // uncommitted acks (as librdkafka with auto-commit off does), which would redeliver them.
    let mut all = Vec::new();
    let mut done = Vec::new();
    for task in tasks {
        let (member, seen) = task.await.expect("member task");
        assert!(!seen.is_empty(), "both members of the group consumed");
        all.extend(seen);
        done.push(member);
    }
    for member in done {
        member.close().await.expect("close");
    }
    let distinct: HashSet<u64> = all.iter().copied().collect();
    let lost = N as usize - distinct.len();
    let duplicated = all.len() - distinct.len();
    assert_eq!((lost, duplicated), (0, 0), "0 lost, 0 duplicated");
    assert_eq!(distinct, (0..N).collect::<HashSet<_>>());
}

async fn restart_resumes_from_committed_offset(
    transport: Arc<dyn Transport>,
    exact_watermarks: bool,
) {
    const N: u64 = 3000;
    const PARTITIONS: i32 = 3;
    let topic = common::unique("llmopt.test.restart");
    let group = common::unique("group");
    transport
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: PARTITIONS,
        }])
        .await
        .expect("create topic");
    let ends = publish_all(transport.as_ref(), &topic, 0..N).await;

    // First run: reads 1200 records, finishes (acks) 1000 of them, commits, then stops with 200
    // read but unprocessed, like a process killed mid-batch.
    let mut first = transport
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("first");
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    let mut processed = HashSet::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < 1200 {
        assert!(Instant::now() < deadline, "first run stalled after {read}");
        let Some(m) = first.poll(Duration::from_millis(200)).await.expect("poll") else {
            continue;
        };
        read += 1;
        if read <= 1000 {
            first.ack(&m).expect("ack");
            processed.insert((m.partition, m.offset));
            let next = acked.entry(m.partition).or_default();
            *next = (*next).max(m.offset + 1);
        }
    }
    first.commit().await.expect("commit");
    first.close().await.expect("close");
    let lag = transport
        .group_lag(&group, std::slice::from_ref(&topic))
        .await
        .expect("group lag");
    let uncommitted = N as i64 - processed.len() as i64;
    if exact_watermarks {
        assert_eq!(lag, uncommitted, "lag = what was not committed");
    } else {
        // tansu reports a partition's high watermark as the base offset of its last record
        // batch, so the lag it allows us to compute can fall short by that batch.
        assert!(
            lag > 0 && lag <= uncommitted,
            "lag {lag} vs {uncommitted} uncommitted"
        );
    }

    // Second run, same group: starts exactly at the committed offsets and reads the rest.
    let mut second = transport
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("second");
    let mut first_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rest = HashSet::new();
    let expected_rest = N as usize - processed.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rest.len() < expected_rest {
        assert!(
            Instant::now() < deadline,
            "second run stalled at {}",
            rest.len()
        );
        let Some(m) = second.poll(Duration::from_millis(200)).await.expect("poll") else {
            continue;
        };
        first_offsets.entry(m.partition).or_insert(m.offset);
        assert!(
            !processed.contains(&(m.partition, m.offset)),
            "committed record re-read"
        );
        assert!(
            rest.insert((m.partition, m.offset)),
            "duplicate within the second run"
        );
        second.ack(&m).expect("ack");
    }
    second.close().await.expect("close");
    let lag = transport
        .group_lag(&group, std::slice::from_ref(&topic))
        .await
        .expect("group lag");
    assert_eq!(lag, 0, "everything committed after the second run");
    for partition in 0..PARTITIONS {
        let committed = acked.get(&partition).copied().unwrap_or(0);
        let end = ends.get(&partition).copied().unwrap_or(0);
        let expected_first = (committed < end).then_some(committed);
        assert_eq!(
            first_offsets.get(&partition).copied(),
            expected_first,
            "partition {partition} (committed {committed}, end {end}) resumes at its committed offset"
        );
    }
    assert_eq!(processed.len() + rest.len(), N as usize, "nothing skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_100k_events_two_member_group_no_loss_no_duplicates() {
    hundred_thousand_events_two_members(kafka()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_100k_events_two_member_group_no_loss_no_duplicates() {
    hundred_thousand_events_two_members(embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_restart_resumes_from_committed_offset() {
    restart_resumes_from_committed_offset(kafka(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_restart_resumes_from_committed_offset() {
    restart_resumes_from_committed_offset(embedded(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_member_reports_its_own_lag_without_blocking_the_poll_loop() {
    let transport = kafka();
    let topic = common::unique("lag");
    transport
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 2,
        }])
        .await
        .expect("topic");
    let ends = publish_all(transport.as_ref(), &topic, 0..2_000).await;
    let mut consumer = transport
        .subscribe(&common::unique("lag-group"), std::slice::from_ref(&topic))
        .await
        .expect("subscribe");
    // A group that has read but never committed: its whole backlog is lag, although
    // librdkafka's own consumer_lag says -1 (unknown) there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
        let started = Instant::now();
        let lags = consumer.lag().await.expect("lag");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "lag is read from librdkafka's statistics, not asked of the broker"
        );
        let reported: BTreeMap<i32, i64> = lags.iter().map(|(tp, l)| (tp.partition, *l)).collect();
        let owned = ends.keys().all(|p| reported.contains_key(p));
        // tansu's high watermark can trail the last batch (see group_lag above), so the lag
        // may fall short of the backlog, never exceed it.
        if owned && reported.values().all(|l| *l > 0) {
            for (partition, lag) in &reported {
                assert!(
                    *lag <= ends[partition],
                    "lag {lag} > end {}",
                    ends[partition]
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lag reported for {ends:?}: {lags:?}"
        );
    }
    consumer.close().await.expect("close");
}

/// A paused member delivers nothing from its partitions while it keeps polling (and stays in
/// its group); resumed, it delivers everything from where it was, nothing lost or repeated.
async fn pause_holds_records_until_resume(transport: Arc<dyn Transport>) {
    let topic = common::unique("llmopt.pause");
    transport
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 2,
        }])
        .await
        .expect("topic");
    let mut consumer = transport
        .subscribe(&common::unique("pause-group"), std::slice::from_ref(&topic))
        .await
        .expect("subscribe");
    publish_all(transport.as_ref(), &topic, 0..10).await;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 10 {
        assert!(Instant::now() < deadline, "first records never came");
        if let Some(m) = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            seen.insert(m.offset * 10 + i64::from(m.partition));
            consumer.ack(&m).expect("ack");
        }
    }
    consumer.pause().expect("pause");
    publish_all(transport.as_ref(), &topic, 10..20).await;
    let paused_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < paused_until {
        assert!(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll while paused")
                .is_none(),
            "a paused member delivered a record"
        );
    }
    consumer.resume().expect("resume");
    let registry = SchemaRegistry::current();
    let mut after = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while after.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "resumed member delivered {after:?}"
        );
        if let Some(m) = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            assert!(
                after.insert(check_content(&m, &registry)),
                "record delivered twice"
            );
        }
    }
    assert_eq!(after, (10..20).collect::<HashSet<u64>>());
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_pause_holds_records_until_resume() {
    pause_holds_records_until_resume(kafka()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pause_holds_records_until_resume() {
    pause_holds_records_until_resume(embedded()).await;
}
