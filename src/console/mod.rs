//! `llmopt console`: the operator's web UI and JSON API over the live loop.
//!
//! The console reads the operator topics (`windows`, `alerts`, `decisions`, `config.changes`,
//! `quantization.jobs`, `artifacts`) into a bounded in-memory [`view::ConsoleView`], rebuilt from the topics on every
//! start (its consumer group is its own and never commits), and serves it on one port: the UI at
//! `/`, the API at `/api/v1` ([`api`]), live updates as server-sent events. `llmopt demo
//! --console ADDR` serves the same console on the in-process demo.

pub mod api;
mod assets;
pub mod bench;
pub mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::{AnyEvent, SchemaRegistry};
use llmopt_runtime::shutdown::Shutdown;
use llmopt_transport::{LogicalTopic, TopicNames, Transport};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use api::ConsoleState;

/// The `console` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address the UI and API listen on.
    pub listen: String,
    /// Who may approve and reject decisions: name -> bearer token. Empty: the console is
    /// read-only. Set tokens through the environment (`LLMOPT_CONSOLE__TOKENS__ALICE=...`), not
    /// in a file.
    pub tokens: BTreeMap<String, String>,
    /// Event time of window results kept (ms behind the newest window).
    pub retention_ms: i64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            tokens: BTreeMap::new(),
            retention_ms: 24 * 3_600_000,
        }
    }
}

/// The topics the console reads.
pub const TOPICS: [LogicalTopic; 6] = [
    LogicalTopic::Windows,
    LogicalTopic::Alerts,
    LogicalTopic::Decisions,
    LogicalTopic::ConfigChanges,
    LogicalTopic::QuantizationJobs,
    LogicalTopic::Artifacts,
];

/// Serves the console of `state` on `addr` until the task is aborted; returns the bound
/// address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<ConsoleState>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("console: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = api::router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "console server stopped");
        }
    });
    Ok((bound, task))
}

/// Feeds `state` from the topics on `transport` until `stop`: from the beginning of each topic
/// (a consumer group of its own, never committed), then live. `health` turns ready once the
/// topics have been read to their end (the view is rebuilt).
pub async fn follow(
    transport: Arc<dyn Transport>,
    names: &TopicNames,
    state: Arc<ConsoleState>,
    health: Arc<llmopt_runtime::health::Health>,
    mut stop: Shutdown,
) -> anyhow::Result<()> {
    transport.ensure_topics(&names.all_specs()).await?;
    let topics = TOPICS.map(|t| names.name(t));
    let group = names.group(&format!(
        "console-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    let mut consumer = transport.subscribe(&group, &topics).await?;
    let registry = SchemaRegistry::current();
    loop {
        let polled = tokio::select! {
            polled = consumer.poll(Duration::from_millis(200)) => polled?,
            _ = stop.wait() => break,
        };
        let Some(m) = polled else {
            if !health.is_ready() && !consumer.assignment()?.is_empty() {
                health.set_ready(true);
            }
            continue;
        };
        let record = KafkaMessage {
            key: m.key.clone(),
            headers: m.headers.clone(),
            value: m.value.clone(),
        };
        match llmopt_cloudevents::decode(&record, &Default::default())
            .map_err(anyhow::Error::from)
            .and_then(|(ce, _)| AnyEvent::from_cloudevent(&ce, &registry).map_err(Into::into))
        {
            Ok(event) => state.apply(&event),
            Err(e) => tracing::warn!(topic = %m.topic, error = %e, "console: record skipped"),
        }
        consumer.ack(&m)?;
    }
    consumer.close().await?;
    Ok(())
}
