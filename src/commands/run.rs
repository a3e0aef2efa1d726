//! `llmopt run <service>`: one service as its own process against Kafka and Redis (or the
//! embedded parts), with its admin endpoint, until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use llmopt_ingest::otlp_kafka::CollectorBridge;
use llmopt_ingest::otlp_receiver::{self, OtlpCounters, OtlpReceiver};
use llmopt_runtime::{admin, shutdown};
use llmopt_state::memory::MemoryStore;
use llmopt_state::redis::RedisStore;
use llmopt_state::{StateKind, StateStore};
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{LogicalTopic, TopicNames, Transport, TransportKind};

use llmopt::config::AppConfig;
use llmopt::pipeline::{self, Service};

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

impl RunArgs {
    /// The service's name (`ingest`, ...).
    pub fn service_name(&self) -> &'static str {
        self.service.name()
    }
}

pub async fn run(
    config: &AppConfig,
    args: RunArgs,
    telemetry: &llmopt::telemetry::TelemetryGuard,
) -> anyhow::Result<()> {
    let listen =
        match args.admin_listen {
            Some(addr) => addr,
            None => config.admin.listen.parse().with_context(|| {
                format!("admin.listen `{}` is not an address", config.admin.listen)
            })?,
        };
    let name = args.service.name();
    // The admin endpoint comes first: `/health` answers while the service connects, joins its
    // group and rebuilds its state; `/ready` turns true once it has caught up.
    let observed = pipeline::Observed::new(args.service);
    let bound = admin::serve(listen, observed.health.clone(), observed.metrics.clone()).await?;
    eprintln!("llmopt {name}: admin endpoint on http://{bound} (/health, /ready, /metrics)");
    if let Some(meter) = telemetry.meter() {
        llmopt::telemetry::mirror_prometheus(observed.metrics.registry().clone(), meter);
    }
    let transport = build_transport(config, name)?;
    let signal = shutdown::on_signals();
    let mut bridge = None;
    let otlp = &config.ingest.otlp;
    if args.service == Service::Ingest && (otlp.listen.is_some() || !otlp.kafka_topics.is_empty()) {
        let names = TopicNames::new(&config.transport);
        transport.ensure_topics(&names.all_specs()).await?;
        let counters = OtlpCounters::register(observed.metrics.registry())?;
        if let Some(otlp_listen) = &otlp.listen {
            let addr: SocketAddr = otlp_listen
                .parse()
                .with_context(|| format!("ingest.otlp.listen `{otlp_listen}` is not an address"))?;
            let receiver = OtlpReceiver::new(
                transport.clone(),
                names.name(LogicalTopic::TelemetryRaw),
                names.name(LogicalTopic::DeadLetter),
                otlp.clone(),
                &counters,
            );
            let bound = otlp_receiver::serve(addr, Arc::new(receiver)).await?;
            eprintln!("llmopt {name}: OTLP/HTTP trace receiver on http://{bound}/v1/traces");
        }
        if !otlp.kafka_topics.is_empty() {
            let collector = CollectorBridge {
                transport: transport.clone(),
                group: names.group("ingest-otlp"),
                topics: otlp.kafka_topics.clone(),
                mapping: otlp.mapping.clone(),
                raw_topic: names.name(LogicalTopic::TelemetryRaw),
                dead_letter_topic: names.name(LogicalTopic::DeadLetter),
                spans: counters.spans.clone(),
            };
            bridge = Some(tokio::spawn(collector.run(signal.clone())));
        }
    }
    let store = build_state(config).await?;
    let handle = pipeline::start_observed(
        args.service,
        config,
        transport,
        store,
        config.runtime.runner(),
        observed,
    )
    .await?;
    let summary = handle.stage.run_until(signal).await?;
    if let Some(bridge) = bridge {
        match bridge.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("llmopt {name}: collector topics: {e}"),
            Err(e) => eprintln!("llmopt {name}: collector topics task: {e}"),
        }
    }
    handle.health.set_stopping();
    eprintln!("llmopt {name}: stopped after {summary:?}");
    Ok(())
}
