//! `llmopt run <service>`: one service as its own process against Kafka and Redis (or the
//! embedded parts), with its admin endpoint, until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Runner, RunnerConfig};
use llmopt_runtime::{admin, shutdown, Effects, Processor};
use llmopt_state::memory::MemoryStore;
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateKind, StateStore};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{TopicNames, Transport, TransportKind};

use crate::config::AppConfig;

/// The services `llmopt run` can start.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Service {
    /// Validate, normalise, deduplicate and price raw telemetry.
    Ingest,
}

/// `llmopt run` options.
#[derive(Args)]
pub struct RunArgs {
    /// Which service to run.
    service: Service,
    /// Address of the admin endpoint (/health, /ready, /metrics); overrides `admin.listen`.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

/// The transport the configuration asks for.
pub fn build_transport(config: &AppConfig, service: &str) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(match config.transport.kind {
        TransportKind::Embedded => Arc::new(EmbeddedTransport::new(config.transport.partitions)),
        TransportKind::Kafka => Arc::new(
            KafkaTransport::new(&config.transport.kafka, service).context("connecting to Kafka")?,
        ),
    })
}

/// The state store the configuration asks for.
pub async fn build_state(config: &AppConfig) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match config.state.kind {
        StateKind::Embedded => Arc::new(MemoryStore::new()),
        StateKind::Redis => Arc::new(
            RedisStore::connect(&config.state)
                .await
                .context("connecting to Redis")?,
        ),
    })
}

pub async fn run(config: &AppConfig, args: RunArgs) -> anyhow::Result<()> {
    let listen =
        match args.admin_listen {
            Some(addr) => addr,
            None => config.admin.listen.parse().with_context(|| {
                format!("admin.listen `{}` is not an address", config.admin.listen)
            })?,
        };
    match args.service {
        Service::Ingest => {
            let store = build_state(config).await?;
            let effects = llmopt_ingest::DedupEffects::new(
                store,
                Duration::from_millis(config.ingest.dedup_horizon_ms),
            );
            serve(
                config,
                listen,
                llmopt_ingest::Ingest::new(config.ingest.clone()),
                effects,
            )
            .await
        }
    }
}

async fn serve<P: Processor, E: Effects>(
    config: &AppConfig,
    listen: SocketAddr,
    processor: P,
    effects: E,
) -> anyhow::Result<()> {
    let name = processor.name();
    let transport = build_transport(config, name)?;
    let health = Arc::new(Health::new());
    let metrics = Arc::new(ServiceMetrics::new(name));
    let bound = admin::serve(listen, health.clone(), metrics.clone()).await?;
    eprintln!("llmopt {name}: admin endpoint on http://{bound} (/health, /ready, /metrics)");
    let runner = Runner::new(
        processor,
        effects,
        transport,
        TopicNames::new(&config.transport),
        metrics,
        health.clone(),
        RunnerConfig::default(),
    );
    let (_, summary) = runner.run(shutdown::on_signals()).await?;
    health.set_stopping();
    eprintln!("llmopt {name}: stopped after {summary:?}");
    Ok(())
}
