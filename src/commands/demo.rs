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
    config.decision.mode = llmopt_decision::config::Mode::Auto;
    println!(
        "llmopt demo: scenario `{}` ({} simulated s), seed {}, all services in one process on the embedded transport",
        options.scenario.name, options.scenario.duration_s, options.seed
    );
    let mut print = |line: String| println!("{line}");
    let result = demo::run_embedded(config, &options, &mut print).await?;
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
    Ok(())
}
