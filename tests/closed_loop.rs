//! The closed loop end to end on the default scenario: every injected incident yields its alert
//! and the expected decision with no alert in quiet periods; the run is reproducible; and the
//! same scenario through the real broker and Redis, with each service as its own task with its
//! own Kafka clients, produces the same alerts, decisions and final routing config.

mod common;

use std::sync::Arc;
use std::time::Duration;

use llmopt::demo::driver::{ClosedLoop, WatchIdle};
use llmopt::demo::{self, DemoResult, Fingerprint};
use llmopt::pipeline::{self, Service};
use llmopt_events::{AlertStatus, DecisionState, Strategy};
use llmopt_runtime::runner::RunnerConfig;
use llmopt_runtime::shutdown;
use llmopt_sim::GroundTruthKind;
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateConfig, StateKind, StateStore};
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{TopicNames, Transport, TransportConfig, TransportKind};

use common::lockstep::{auto_config as base_config, options};

async fn embedded_run() -> (DemoResult, Vec<String>) {
    let mut lines = Vec::new();
    let mut print = |l: String| lines.push(l);
    let result = demo::run_embedded(base_config(), &options(), &mut print)
        .await
        .expect("embedded run");
    let lines = lines
        .into_iter()
        .filter(|l| !l.contains("events/s"))
        .collect();
    (result, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_scenario_every_incident_alerted_and_decided_no_false_alerts() {
    let (result, lines) = embedded_run().await;
    let outcome = &result.outcome;
    assert!(
        result.calls > 50_000,
        "the fleet ran: {} calls",
        result.calls
    );
    for incident in &outcome.incidents {
        let name = &incident.truth.name;
        if incident.truth.kind != GroundTruthKind::CheaperCandidate {
            assert!(incident.first_alert.is_some(), "{name}: alerted");
        }
        match incident.truth.expected_strategy {
            Some(expected) => {
                let (decision, _) = incident
                    .decision
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}: expected a {expected:?} decision"));
                assert_eq!(decision.strategy, expected, "{name}");
            }
            None => assert!(incident.decision.is_none(), "{name}: no decision expected"),
        }
    }
    assert!(
        outcome.false_alerts.is_empty(),
        "quiet periods raise no alert: {:?}",
        outcome.false_alerts
    );
    // The loop closed: decisions changed the live routing the fleet reads. The outage failed
    // search/query-rewrite over to its fallback; once gemini recovered, a probe held and the
    // traffic came back in steps.
    let query = &result.routing[&("search".to_string(), "query-rewrite".to_string())];
    assert!(query.version > 1);
    let on_query_rewrite = |phase: Option<&str>| {
        result
            .record
            .decisions
            .iter()
            .filter(|d| d.route == "query-rewrite" && d.strategy == Strategy::Failover)
            .filter(|d| d.state == DecisionState::Succeeded)
            .filter(|d| d.params.get("phase").map(String::as_str) == phase)
            .count()
    };
    assert!(on_query_rewrite(None) >= 1, "failed over");
    assert_eq!(
        on_query_rewrite(Some("failback_probe")),
        1,
        "one probe held"
    );
    assert!(on_query_rewrite(Some("failback")) >= 1, "returned in steps");
    assert!(
        query
            .targets
            .iter()
            .any(|t| t.model == "gemini-1.5-flash" && t.weight > 0.99),
        "failed back: {query:?}"
    );
    let answer = &result.routing[&("support-bot".to_string(), "answer".to_string())];
    assert_eq!(answer.version, 3, "manual change v2 rolled back as v3");
    assert!(result
        .record
        .decisions
        .iter()
        .any(|d| d.strategy == Strategy::CheaperModelCanary));
    assert!(lines.iter().any(|l| l.contains("ALERT FIRING")));
    // The cost report's totals are the windows' sums; the cheaper-model canary saved money.
    let cost = result.cost_report().expect("cost report");
    let window_spend: f64 = result.record.windows.values().map(|w| w.cost_usd).sum();
    let window_calls: i64 = result.record.windows.values().map(|w| w.count).sum();
    assert!((cost.spend_usd - window_spend).abs() <= 1e-9 * window_spend.max(1.0));
    assert_eq!(cost.calls, window_calls);
    let canary = cost
        .decisions
        .iter()
        .find(|d| d.strategy.as_deref() == Some("CheaperModelCanary"))
        .expect("the canary's savings");
    assert!(
        canary.savings_usd.is_some_and(|s| s > 0.0),
        "the cheaper model saved money: {canary:?}"
    );

    // Same seed, same output.
    let (again, lines_again) = embedded_run().await;
    assert_eq!(lines, lines_again, "console output is reproducible");
    assert_eq!(result.fingerprint(), again.fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_scenario_through_kafka_and_redis_matches_embedded() {
    let (embedded, _) = embedded_run().await;

    let mut config = base_config();
    config.transport = TransportConfig {
        kind: TransportKind::Kafka,
        topic_prefix: format!("{}.", common::unique("loop")),
        partitions: 6,
        kafka: common::kafka_config(),
        ..TransportConfig::default()
    };
    // Idle consumers answer fast, so each simulated step settles quickly.
    config
        .transport
        .kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "10".into());
    config.state = StateConfig {
        kind: StateKind::Redis,
        redis_url: common::redis_url(),
        key_prefix: format!("{}:", common::unique("loop")),
        ..StateConfig::default()
    };
    let options = options();
    let (config, sim) = demo::prepare(config, &options).expect("prepare");
    let store: Arc<dyn StateStore> =
        Arc::new(RedisStore::connect(&config.state).await.expect("redis"));

    let (trigger, stop) = shutdown::channel();
    let mut tasks = Vec::new();
    let mut health = Vec::new();
    for service in Service::ALL {
        // Each service has its own Kafka clients, as separate processes would.
        let name = format!("{service:?}").to_lowercase();
        let transport: Arc<dyn Transport> =
            Arc::new(KafkaTransport::new(&config.transport.kafka, &name).expect("kafka transport"));
        let runner_config = RunnerConfig {
            poll_timeout: Duration::from_millis(20),
            commit_every: 500,
            ..RunnerConfig::default()
        };
        let handle = pipeline::start(service, &config, transport, store.clone(), runner_config)
            .await
            .expect("start service");
        health.push(handle.health.clone());
        tasks.push(tokio::spawn(handle.stage.run_until(stop.clone())));
    }
    let mut settle = WatchIdle {
        health,
        quiet: Duration::from_millis(400),
        timeout: Duration::from_secs(120),
    };
    let driver_transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::new(&config.transport.kafka, "driver").expect("driver transport"));
    let closed = ClosedLoop::new(
        sim,
        driver_transport,
        store.clone(),
        TopicNames::new(&config.transport),
        options.step_s as i64 * 1000,
        &common::unique("console"),
        Duration::from_millis(150),
    )
    .await
    .expect("closed loop");
    let mut print = |line: String| eprintln!("kafka run: {line}");
    let kafka = demo::drive(
        closed,
        &mut settle,
        store.as_ref(),
        &options,
        None,
        &mut print,
    )
    .await
    .expect("kafka run");
    trigger.trigger();
    for task in tasks {
        task.await
            .expect("service task")
            .expect("service ran cleanly");
    }

    let Fingerprint {
        alerts: e_alerts,
        decisions: e_decisions,
        routing: e_routing,
    } = embedded.fingerprint();
    let Fingerprint {
        alerts: k_alerts,
        decisions: k_decisions,
        routing: k_routing,
    } = kafka.fingerprint();
    assert_eq!(k_routing, e_routing, "same final routing config");
    assert_eq!(k_decisions, e_decisions, "same decisions");
    assert_eq!(k_alerts, e_alerts, "same alerts");
    assert!(kafka
        .record
        .alerts
        .iter()
        .any(|a| a.status == AlertStatus::Firing));
}
