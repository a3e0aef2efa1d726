//! Services and operator commands as separate `llmopt` processes against the real broker and
//! Redis: `llmopt run` with its admin endpoint and graceful SIGTERM, `llmopt actuator rebuild`,
//! `llmopt decisions approve`.

mod common;

use common::process::{free_port, http_get};

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_actuator::{live_key, read_live_config};
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{samples, ChangeKind, ConfigChange, DecisionState, RouteTarget};
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateConfig, StateKind, StateStore};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, OutboundMessage, TopicNames, Transport, TransportConfig};

struct Env {
    prefix: String,
    key_prefix: String,
}

impl Env {
    fn new() -> Self {
        Self {
            prefix: format!("{}.", common::unique("svc")),
            key_prefix: format!("{}:", common::unique("svc")),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmopt"));
        cmd.args(args)
            .env("LLMOPT_TRANSPORT__KIND", "kafka")
            .env("LLMOPT_TRANSPORT__TOPIC_PREFIX", &self.prefix)
            .env("LLMOPT_TRANSPORT__PARTITIONS", "3")
            .env("LLMOPT_KAFKA_BOOTSTRAP", common::kafka_bootstrap())
            .env("LLMOPT_STATE__KIND", "redis")
            .env("LLMOPT_REDIS_URL", common::redis_url())
            .env("LLMOPT_STATE__KEY_PREFIX", &self.key_prefix)
            .env_remove("LLMOPT_CONFIG");
        cmd
    }

    fn names(&self) -> TopicNames {
        TopicNames::new(&TransportConfig {
            topic_prefix: self.prefix.clone(),
            partitions: 3,
            ..TransportConfig::default()
        })
    }

    async fn store(&self) -> Arc<dyn StateStore> {
        let config = StateConfig {
            kind: StateKind::Redis,
            redis_url: common::redis_url(),
            key_prefix: self.key_prefix.clone(),
            ..StateConfig::default()
        };
        Arc::new(RedisStore::connect(&config).await.expect("redis"))
    }

    async fn transport(&self) -> Arc<dyn Transport> {
        let t: Arc<dyn Transport> =
            Arc::new(KafkaTransport::new(&common::kafka_config(), "svc-test").expect("kafka"));
        t.ensure_topics(&self.names().all_specs())
            .await
            .expect("topics");
        t
    }
}

fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    common::process::wait_for(what, timeout, check).unwrap_or_else(|e| panic!("{e}"));
}

fn sigterm_and_wait(mut child: Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            assert!(
                status.success(),
                "clean exit on SIGTERM: {status}\n{stderr}"
            );
            return stderr;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn raw_call(n: u64) -> OutboundMessage {
    let call = samples::llm_call(n);
    let meta = EventMeta {
        id: format!("svc-{n}"),
        source: "/apps/svc".into(),
        time_ms: Some(call.event_time),
        partition_key: Some(format!("{}/{}", call.app, call.route)),
        ..EventMeta::default()
    };
    let m = wire::to_kafka(&call, &meta, DataFormat::Avro).expect("encode");
    OutboundMessage::from(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingest_serves_admin_endpoints_and_stops_gracefully_on_sigterm() {
    let env = Env::new();
    let transport = env.transport().await;
    let raw = env.names().name(LogicalTopic::TelemetryRaw);
    let batch = (0..50).map(raw_call).collect();
    transport.publish_batch(&raw, batch).await.expect("publish");

    let port = free_port();
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmopt run ingest");
    wait_for("/health", Duration::from_secs(30), || {
        http_get(port, "/health").is_some_and(|(s, _)| s == 200)
    });
    wait_for("/ready", Duration::from_secs(60), || {
        http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let telemetry = env.names().name(LogicalTopic::Telemetry);
    let expected =
        format!("llmopt_events_out_total{{service=\"ingest\",topic=\"{telemetry}\"}} 50");
    wait_for("50 events out in /metrics", Duration::from_secs(60), || {
        http_get(port, "/metrics").is_some_and(|(_, body)| body.contains(&expected))
    });
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("llmopt_processing_seconds_bucket"),
        "latency histogram"
    );
    let stderr = sigterm_and_wait(child);
    assert!(stderr.contains("stopped after"), "{stderr}");

    // Offsets were committed on the way out: a restarted ingest has nothing left to do.
    let port = free_port();
    let child = env
        .command(&[
            "run",
            "ingest",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn second ingest");
    wait_for("second /ready", Duration::from_secs(60), || {
        http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let stderr = sigterm_and_wait(child);
    assert!(
        stderr.contains("consumed: 0"),
        "nothing re-read after a graceful stop: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_rebuild_recomputes_live_config_from_the_topic_alone() {
    let env = Env::new();
    let transport = env.transport().await;
    let target = |provider: &str, model: &str, weight: f64| RouteTarget {
        provider: provider.into(),
        model: model.into(),
        weight,
    };
    let change =
        |app: &str, version: i64, kind: ChangeKind, targets: Vec<RouteTarget>| ConfigChange {
            id: format!("{app}/r/v{version}"),
            event_time: 1_767_225_600_000 + version * 1000,
            app: app.into(),
            route: "r".into(),
            version,
            previous_version: (version > 1).then_some(version - 1),
            kind,
            decision_id: None,
            targets,
            params: Default::default(),
        };
    let changes = [
        change(
            "a",
            1,
            ChangeKind::Initial,
            vec![target("openai", "gpt-4o", 1.0)],
        ),
        change(
            "b",
            1,
            ChangeKind::Initial,
            vec![target("anthropic", "claude-3-5-haiku", 1.0)],
        ),
        change(
            "a",
            2,
            ChangeKind::Apply,
            vec![
                target("openai", "gpt-4o", 0.5),
                target("openai", "gpt-4o-mini", 0.5),
            ],
        ),
    ];
    let topic = env.names().name(LogicalTopic::ConfigChanges);
    for c in &changes {
        let meta = EventMeta {
            id: c.id.clone(),
            source: "/test".into(),
            time_ms: Some(c.event_time),
            partition_key: Some(format!("{}/{}", c.app, c.route)),
            ..EventMeta::default()
        };
        let m = wire::to_kafka(c, &meta, DataFormat::Avro).expect("encode");
        transport
            .publish(&topic, OutboundMessage::from(m))
            .await
            .expect("publish");
    }
    // The store holds garbage for one route and nothing for the other.
    let store = env.store().await;
    store
        .put(&live_key("a", "r"), b"not a config")
        .await
        .expect("put");

    let out = env
        .command(&["actuator", "rebuild"])
        .output()
        .expect("rebuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = read_live_config(store.as_ref(), "a", "r")
        .await
        .expect("read")
        .expect("a");
    assert_eq!(a.version, 2);
    assert_eq!(a.targets.len(), 2);
    let b = read_live_config(store.as_ref(), "b", "r")
        .await
        .expect("read")
        .expect("b");
    assert_eq!(
        (b.version, b.targets[0].model.as_str()),
        (1, "claude-3-5-haiku")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_approve_publishes_the_approval() {
    let env = Env::new();
    let transport = env.transport().await;
    let mut proposed = samples::decision();
    proposed.state = DecisionState::Proposed;
    let meta = EventMeta {
        id: format!("{}/proposed/0", proposed.id),
        source: "llmopt/decision".into(),
        time_ms: Some(proposed.event_time),
        partition_key: Some(format!("{}/{}", proposed.app, proposed.route)),
        ..EventMeta::default()
    };
    let m = wire::to_kafka(&proposed, &meta, DataFormat::Avro).expect("encode");
    let topic = env.names().name(LogicalTopic::Decisions);
    transport
        .publish(&topic, OutboundMessage::from(m))
        .await
        .expect("publish");

    let list = env
        .command(&["decisions", "list", "--state", "PROPOSED"])
        .output()
        .expect("list");
    assert!(String::from_utf8_lossy(&list.stdout).contains(&proposed.id));
    let approve = env
        .command(&["decisions", "approve", &proposed.id])
        .output()
        .expect("approve");
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let list = env
        .command(&["decisions", "list", "--state", "APPROVED"])
        .output()
        .expect("list");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&proposed.id),
        "approved"
    );
    // Only proposed decisions can be approved.
    let again = env
        .command(&["decisions", "approve", &proposed.id])
        .output()
        .expect("approve again");
    assert!(!again.status.success());
}
