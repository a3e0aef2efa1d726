//! `llmopt`: the one command users run. Subcommands run the demo, manage topics and schemas and
//! show the effective configuration; `--help` on each says what it does.

mod commands;

/// mimalloc instead of glibc's malloc: every service allocates per event (decoded strings,
/// encoded records), and glibc's free lists cost the demo a third of its time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Closed-loop optimizer for fleets of LLM applications.
#[derive(Parser)]
#[command(name = "llmopt", version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). `LLMOPT_*` environment variables override it, with `__` between
    /// levels: LLMOPT_TRANSPORT__KIND=kafka, LLMOPT_TRANSPORT__KAFKA__BOOTSTRAP_SERVERS=...
    #[arg(short, long, global = true, env = "LLMOPT_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline demo in one process on the embedded transport and state store (no servers).
    Demo(commands::demo::DemoArgs),
    /// Drive services on Kafka with the simulated fleet (telemetry in, summary of alerts and
    /// decisions out); the traffic source of docker-compose, load tests and fault tests.
    Loadgen(commands::loadgen::LoadgenArgs),
    /// Probe an admin endpoint (`/health` or `/ready`): exit 0 on HTTP 200, 1 otherwise. The
    /// image has no shell or HTTP client, so container healthchecks run this.
    Probe(commands::probe::ProbeArgs),
    /// Run one service as its own process (Kafka and Redis per the configuration) until SIGTERM.
    Run(commands::run::RunArgs),
    /// Serve the operator console (web UI and JSON API over the topics) until SIGTERM.
    Console(commands::console::ConsoleArgs),
    /// Rebuild the live routing config from the config-change topic.
    #[command(subcommand)]
    Actuator(commands::actuator::ActuatorCommand),
    /// List, approve or reject optimisation decisions (propose mode).
    #[command(subcommand)]
    Decisions(commands::decisions::DecisionsCommand),
    /// Inspect the event contracts and check schema evolution.
    #[command(subcommand)]
    Schemas(commands::schemas::SchemasCommand),
    /// List or create the pipeline's topics on the configured transport.
    #[command(subcommand)]
    Topics(commands::topics::TopicsCommand),
    /// Quantize a model (RTN/GPTQ) into an artifact, evaluate artifacts, benchmark.
    #[command(subcommand)]
    Quantize(commands::quantize::QuantizeCommand),
    /// Reports read from the topics: `report cost --period day|week|month`.
    #[command(subcommand)]
    Report(commands::report::ReportCommand),
    /// Detection benchmarks: random incident scenarios, NAB result files for NAB's scorer.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Show the effective configuration (file + environment), secrets redacted.
    #[command(subcommand)]
    Config(commands::config_cmd::ConfigCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Services log their lifecycle at info; interactive commands keep the terminal for output.
    let (default_level, otel_name) = match &cli.command {
        Command::Run(args) => ("info", format!("llmopt-{}", args.service_name())),
        Command::Loadgen(_) => ("warn", "llmopt-loadgen".to_string()),
        _ => ("warn", "llmopt".to_string()),
    };
    let config = llmopt::config::AppConfig::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = llmopt::telemetry::init(&config.telemetry, &otel_name, default_level)?;
        match cli.command {
            Command::Demo(args) => commands::demo::run(&config, args).await,
            Command::Run(args) => commands::run::run(&config, args, &telemetry).await,
            Command::Console(args) => commands::console::run(&config, args).await,
            Command::Loadgen(args) => commands::loadgen::run(&config, args).await,
            Command::Probe(args) => commands::probe::run(args).await,
            Command::Actuator(cmd) => commands::actuator::run(&config, cmd).await,
            Command::Decisions(cmd) => commands::decisions::run(&config, cmd).await,
            Command::Schemas(cmd) => commands::schemas::run(cmd),
            Command::Topics(cmd) => commands::topics::run(&config, cmd).await,
            Command::Config(cmd) => commands::config_cmd::run(&config, cmd),
            Command::Quantize(cmd) => commands::quantize::run(&config, cmd),
            Command::Bench(cmd) => commands::bench::run(&config, cmd).await,
            Command::Report(cmd) => commands::report::run(&config, cmd).await,
        }
    })
}
