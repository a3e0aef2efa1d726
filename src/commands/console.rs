//! `llmopt console`: the operator console as its own service against Kafka (or the embedded
//! transport), until SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use llmopt::config::AppConfig;
use llmopt::console::{self, ConsoleState};
use std::sync::Arc;

use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::{admin, shutdown};
use llmopt_transport::TopicNames;

use crate::commands::run::build_transport;

/// `llmopt console` options.
#[derive(Args)]
pub struct ConsoleArgs {
    /// Address of the UI and API; overrides `console.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub async fn run(config: &AppConfig, args: ConsoleArgs) -> anyhow::Result<()> {
    let listen = match args.listen {
        Some(addr) => addr,
        None => config.console.listen.parse().with_context(|| {
            format!(
                "console.listen `{}` is not an address",
                config.console.listen
            )
        })?,
    };
    let transport = build_transport(config, "console")?;
    let names = TopicNames::new(&config.transport);
    let state = ConsoleState::new(
        config.console.retention_ms,
        &config.console.tokens,
        Some((transport.clone(), names.clone())),
    );
    let (bound, server) = console::serve(listen, state.clone()).await?;
    eprintln!(
        "llmopt console: http://{bound}/ ({}), rebuilding from the topics",
        if config.console.tokens.is_empty() {
            "read-only: no console.tokens"
        } else {
            "approvals with a console token"
        }
    );
    // The admin endpoint like every service's: /health, /ready (once the view is rebuilt from
    // the topics), /metrics.
    let admin_listen: SocketAddr = config
        .admin
        .listen
        .parse()
        .with_context(|| format!("admin.listen `{}` is not an address", config.admin.listen))?;
    let health = Arc::new(Health::new());
    let metrics = Arc::new(ServiceMetrics::new("console"));
    let admin_bound = admin::serve(admin_listen, health.clone(), metrics).await?;
    eprintln!("llmopt console: admin endpoint on http://{admin_bound} (/health, /ready, /metrics)");
    let stop = shutdown::on_signals();
    let result = console::follow(transport, &names, state, health.clone(), stop).await;
    health.set_stopping();
    server.abort();
    result
}
