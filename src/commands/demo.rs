//! `llmopt demo`: the closed loop in one process, no servers.

use std::path::PathBuf;

use clap::Args;
use llmopt::config::AppConfig;
use llmopt::demo::{self, DemoOptions};

/// `llmopt demo` options.
#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the simulated fleet; the same seed gives the same output.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Scenario file (TOML); the built-in default scenario otherwise.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Simulated seconds per real second (e.g. 600 runs 10 simulated minutes a second);
    /// 0 runs as fast as the machine allows.
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Stop after this many simulated seconds (default: the scenario's duration).
    #[arg(long)]
    duration: Option<u64>,
    /// Simulated seconds between two reads of the live routing config by the fleet.
    #[arg(long, default_value_t = 60)]
    step: u64,
    /// Optimise every route with the constrained Thompson sampling router (allowed models: the
    /// route's choices; quality floor: 95 % of its most capable model) and print cost and
    /// quality against the baselines at the end.
    #[arg(long)]
    router: bool,
    /// Serve the operator console (web UI and JSON API) on this address while the demo runs,
    /// and keep serving after it ends until Ctrl-C. Use with --speed to watch it live.
    #[arg(long)]
    console: Option<std::net::SocketAddr>,
    /// Leave decisions PROPOSED for an operator (approve them in the console, with a token
    /// from console.tokens) instead of applying them at once.
    #[arg(long)]
    propose: bool,
}

pub async fn run(config: &AppConfig, args: DemoArgs) -> anyhow::Result<()> {
    let scenario = demo::load_scenario(args.scenario.as_deref())?;
    let options = DemoOptions {
        seed: args.seed,
        scenario,
        step_s: args.step,
        speed: args.speed,
        duration_s: args.duration,
        max_rate: None,
    };
    let mut config = config.clone();
    if args.router {
        config = demo::policy::with_router(config, &llmopt_sim::FleetSpec::default(), 0.95, false);
    }
    config.decision.mode = if args.propose {
        llmopt_decision::config::Mode::Propose
    } else {
        llmopt_decision::config::Mode::Auto
    };
    println!(
        "llmopt demo: scenario `{}` ({} simulated s), seed {}, all services in one process on the embedded transport",
        options.scenario.name, options.scenario.duration_s, options.seed
    );
    let mut print = |line: String| println!("{line}");
    let console = match args.console {
        None => None,
        Some(addr) => Some(start_console(&config, addr).await?),
    };
    let result = match &console {
        None => demo::run_embedded(config, &options, &mut print).await?,
        Some((state, transport)) => {
            let (config, sim) = demo::prepare(config, &options)?;
            let state = state.clone();
            let observer = Box::new(move |e: &llmopt_events::AnyEvent| state.apply(e));
            demo::run_embedded_on(
                config,
                sim,
                &options,
                &mut print,
                transport.clone(),
                Some(observer),
            )
            .await?
        }
    };
    print!(
        "{}",
        result.render("ingest → aggregator → detector → decision → actuator")
    );
    if args.router {
        println!("\nROUTER vs BASELINES (same calls; expected quality of the serving model)");
        for l in &result.ledgers {
            let n = l.calls.max(1) as f64;
            println!(
                "  {}/{}: ${:.6}/call vs ${:.6} always {} ({:.0}% less), quality {:.3} vs {:.3}",
                l.app,
                l.route,
                l.cost_usd / n,
                l.capable_cost_usd / n,
                l.capable.as_deref().unwrap_or("-"),
                (1.0 - l.cost_usd / l.capable_cost_usd.max(f64::MIN_POSITIVE)) * 100.0,
                l.quality_sum / n,
                l.capable_quality_sum / n,
            );
        }
    }
    if let Some((_, _)) = console {
        println!("llmopt demo: the run is over; the console keeps serving until Ctrl-C");
        llmopt_runtime::shutdown::on_signals().wait().await;
    }
    Ok(())
}

/// The demo's console: served on `addr`, publishing approvals on the demo's embedded transport.
async fn start_console(
    config: &AppConfig,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(
    std::sync::Arc<llmopt::console::ConsoleState>,
    std::sync::Arc<dyn llmopt_transport::Transport>,
)> {
    let transport: std::sync::Arc<dyn llmopt_transport::Transport> = std::sync::Arc::new(
        llmopt_transport::embedded::EmbeddedTransport::new(config.transport.partitions),
    );
    let names = llmopt_transport::TopicNames::new(&config.transport);
    let state = llmopt::console::ConsoleState::new(
        config.console.retention_ms,
        &config.console.tokens,
        Some((transport.clone(), names)),
    );
    let (bound, _task) = llmopt::console::serve(addr, state.clone()).await?;
    println!("llmopt demo: console on http://{bound}/ (API http://{bound}/api/v1/routes)");
    if config.console.tokens.is_empty() {
        println!(
            "llmopt demo: the console is read-only; set LLMOPT_CONSOLE__TOKENS__<NAME>=<token> to approve from it"
        );
    }
    Ok((state, transport))
}
