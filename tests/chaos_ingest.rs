//! Chaos suite, ingest: `llmopt run ingest` killed with SIGKILL at random points five times and
//! restarted each time, and its Redis restarted (losing everything: it keeps nothing on disk)
//! once mid-run. Every valid event must reach `telemetry` (a copy only as the same id and the
//! same bytes), every malformed one the dead-letter topic, and the process must ride out the
//! Redis outage instead of exiting.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{free_port, http_get, wait_for, Installation, PrivateRedis, ServiceProcess};
use llmopt_events::samples;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const VALID: u64 = 30_000;
/// Valid events written while Redis is down, so ingest meets the outage.
const DURING_OUTAGE: u64 = 2_000;
const DUPLICATES: u64 = 500;
const MALFORMED: u64 = 500;

fn valid(n: u64) -> OutboundMessage {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("call-{n}"),
        source: format!("/apps/{}", call.app),
        time_ms: Some(call.event_time),
        partition_key: Some(format!("{}/{}", call.app, call.route)),
        ..EventMeta::default()
    };
    OutboundMessage::from(wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode"))
}

fn malformed(n: u64) -> OutboundMessage {
    let mut m = valid(1_000_000 + n);
    m.value = Some(b"\x00not avro".to_vec());
    m
}

fn events_in(service: &ServiceProcess) -> u64 {
    service
        .metrics()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("events_in"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Whether the service's last poll found every owned partition at its end.
fn consumer_idle(service: &ServiceProcess) -> bool {
    service
        .metrics()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("consumer_idle"))
        .any(|l| l.ends_with(" 1"))
}

/// Every record of `topic` (read to the end of every partition): id → the distinct values seen
/// under it.
async fn read_topic(transport: &dyn Transport, topic: &str) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    let mut out: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for m in llmopt_transport::read_topic(transport, topic, "chaos-reader")
        .await
        .expect("read topic")
    {
        let id = common::ce_id(&m);
        out.entry(id)
            .or_default()
            .insert(m.value.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_loses_nothing_under_kill_9_and_a_redis_restart() {
    let installation = Installation::new("chaos-ingest", "");
    let mut redis = PrivateRedis::start(free_port(), None);
    let config = TransportConfig {
        topic_prefix: installation.prefix.clone(),
        kafka: common::kafka_config(),
        ..TransportConfig::default()
    };
    let names = TopicNames::new(&config);
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&config.kafka, "chaos-ingest").expect("transport"));
    transport
        .ensure_topics(&names.all_specs())
        .await
        .expect("topics");

    // The raw stream: valid events, redeliveries of some of them, malformed records, shuffled.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut records: Vec<OutboundMessage> = (0..VALID).map(valid).collect();
    records.extend((0..DUPLICATES).map(|_| valid(rng.gen_range(0..VALID))));
    records.extend((0..MALFORMED).map(malformed));
    for i in (1..records.len()).rev() {
        records.swap(i, rng.gen_range(0..=i));
    }
    let raw = names.name(LogicalTopic::TelemetryRaw);
    for chunk in records.chunks(10_000) {
        transport
            .publish_batch(&raw, chunk.to_vec())
            .await
            .expect("publish raw");
    }

    let spawn = |redis_url: &str| {
        installation.spawn_service(
            "ingest",
            &[
                ("LLMOPT_REDIS_URL", redis_url),
                ("LLMOPT_TRANSPORT__PARTITIONS", "6"),
            ],
        )
    };
    let total = VALID + DUPLICATES + MALFORMED;
    let mut ingest = spawn(&redis.url());
    for kill in 0..5 {
        // Let it get into the stream, then SIGKILL at a random point (ingest reads thousands
        // of records a second: the points are early enough to fall inside the stream).
        let seen = events_in(&ingest);
        wait_for("ingest consuming", Duration::from_secs(60), || {
            events_in(&ingest) > seen || consumer_idle(&ingest)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", common::process::read(&ingest.log)));
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        eprintln!("kill -9 #{} after {} records", kill + 1, events_in(&ingest));
        drop(ingest); // SIGKILL
        ingest = spawn(&redis.url());
    }

    // A Redis restart (everything in it lost) while ingest runs: it waits, then goes on. The
    // records published during the outage make it meet the outage even if it has read all
    // before them by then.
    let seen = events_in(&ingest);
    wait_for("ingest consuming", Duration::from_secs(60), || {
        events_in(&ingest) > seen || consumer_idle(&ingest)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", common::process::read(&ingest.log)));
    let port = redis.port;
    redis.stop();
    transport
        .publish_batch(&raw, (VALID..VALID + DURING_OUTAGE).map(valid).collect())
        .await
        .expect("publish during the outage");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        http_get(ingest.port, "/health").is_some_and(|(s, _)| s == 200),
        "ingest stays up while Redis is down\n{}",
        common::process::read(&ingest.log)
    );
    assert!(
        http_get(ingest.port, "/ready").is_some_and(|(s, _)| s != 200),
        "ingest is not ready while Redis is down"
    );
    redis = PrivateRedis::start(port, None);

    // Caught up: the group has committed everything, and ingest itself found every partition
    // at its end (tansu reports a partition's end as its last batch's base offset + 1, so a
    // zero group lag alone can leave most of the last batch unread), with nothing consumed
    // for a second.
    let group = format!("{}ingest", installation.prefix);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut consumed = events_in(&ingest);
    let mut quiet_since = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "ingest did not catch up\n{}",
            common::process::read(&ingest.log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let lag = transport
            .group_lag(&group, std::slice::from_ref(&raw))
            .await
            .unwrap_or(-1);
        let now = events_in(&ingest);
        if lag == 0 && now != consumed {
            eprintln!("group lag 0 while ingest still consumes ({now} records so far)");
        }
        if now != consumed || lag != 0 || !consumer_idle(&ingest) {
            consumed = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    let log = ingest.stop();
    assert!(log.contains("outage"), "the Redis outage is logged:\n{log}");

    let telemetry = read_topic(transport.as_ref(), &names.name(LogicalTopic::Telemetry)).await;
    let missing: Vec<u64> = (0..VALID + DURING_OUTAGE)
        .filter(|n| !telemetry.contains_key(&format!("call-{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} valid events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    for (id, values) in &telemetry {
        assert_eq!(values.len(), 1, "{id} published with different content");
    }
    assert_eq!(
        telemetry.len() as u64,
        VALID + DURING_OUTAGE,
        "nothing but the valid events"
    );
    let dead = read_topic(transport.as_ref(), &names.name(LogicalTopic::DeadLetter)).await;
    assert!(
        dead.len() as u64 >= MALFORMED,
        "{} of {MALFORMED} malformed records dead-lettered",
        dead.len()
    );
    eprintln!(
        "{} raw records: every valid event in telemetry after 5 kills and a Redis restart",
        total + DURING_OUTAGE
    );
    redis.stop();
}
