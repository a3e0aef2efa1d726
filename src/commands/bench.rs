//! `llmopt bench ...`: detection benchmarks (random incident scenarios, NAB) and the router
//! against baselines.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use llmopt::config::AppConfig;

/// `llmopt bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Draw random incident scenarios from a seed, run each through the in-process cores
    /// (pricing, tumbling windows, detector) and print recall per incident kind and magnitude,
    /// time to first alert, false alerts per simulated fleet-day, precision and the detector's
    /// cost per series point.
    Detect {
        /// Scenarios to run.
        #[arg(long, default_value_t = 200)]
        scenarios: usize,
        /// Seed of the scenario draws.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated hours per scenario (the first 90 minutes are quiet).
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// Flat traffic instead of office-hours daily cycles and weekends.
        #[arg(long)]
        flat_traffic: bool,
        /// Noisy tenants on top of the traffic: `bursty` (umbrella bursts twice a day), `all`
        /// (also globex's nightly batch job, learnable only over days: use with --hours 168),
        /// `none`.
        #[arg(long, value_enum, default_value = "bursty")]
        noisy_tenants: llmopt::detect_bench::NoisyTenants,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the detector over Numenta Anomaly Benchmark CSVs (`DATA/<category>/<name>.csv`) and
    /// write NAB result files (`RESULTS/<detector>/<category>/<detector>_<name>.csv`) for NAB's
    /// scorer. The detector runs with the configuration's `detector` section, as the service
    /// does.
    Nab {
        /// Folder holding one sub-folder of CSVs per category (NAB's `data/`).
        #[arg(long)]
        data: PathBuf,
        /// Folder to write the result files into.
        #[arg(long)]
        results: PathBuf,
        /// Detector name in result file names (letters, digits and `-`).
        #[arg(long, default_value = "llmopt")]
        detector: String,
    },
    /// Time the operator console's overview on a large fleet: a view of ROUTES routes with
    /// HOURS of one-minute windows, its data loaded the way the UI loads it (summary, then
    /// every route with its last 3 hours in one request).
    Console {
        /// Routes in the view (two models each).
        #[arg(long, default_value_t = 50)]
        routes: usize,
        /// Hours of windows per series.
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Overview loads timed.
        #[arg(long, default_value_t = 20)]
        loads: usize,
        /// Keep serving the benchmark's console on this address afterwards (for a browser).
        #[arg(long)]
        serve: Option<std::net::SocketAddr>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the default fleet through the whole loop in this process with every route optimised
    /// by the constrained Thompson sampling router, no incidents, and print cost per call and
    /// quality per route against two baselines on the same calls: always the route's most
    /// capable model, and the initial static routing.
    Route {
        /// Simulated hours.
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Each route's quality floor as a share of its most capable model's quality.
        #[arg(long, default_value_t = 0.95)]
        share_of_best: f64,
        /// Multiplies every route's call rate.
        #[arg(long, default_value_t = 1.0)]
        rate_scale: f64,
        /// Also tune each route's max_tokens (its value and three quarters of it).
        #[arg(long)]
        tune: bool,
        /// Print one route's decisions and its per-minute quality against the floor
        /// (`app/route`), to see what the loop did to it.
        #[arg(long, value_name = "APP/ROUTE")]
        trace: Option<String>,
        /// Play this scenario file's incidents on top of the quiet fleet (its duration is not
        /// used: --hours is).
        #[arg(long, value_name = "FILE")]
        scenario: Option<std::path::PathBuf>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &AppConfig, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Route {
            hours,
            seed,
            share_of_best,
            rate_scale,
            tune,
            trace,
            scenario,
            json,
        } => {
            anyhow::ensure!(
                share_of_best > 0.0 && share_of_best <= 1.0,
                "--share-of-best must be in (0, 1]"
            );
            let options = llmopt::route_bench::RouteBenchOptions {
                hours,
                seed,
                share_of_best,
                rate_scale,
                tune,
                trace,
                incidents: match scenario {
                    Some(path) => llmopt::demo::load_scenario(Some(&path))?.incidents,
                    None => Vec::new(),
                },
            };
            let report = llmopt::route_bench::run(config, &options, &mut |line| {
                if !json {
                    eprintln!("{line}");
                }
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", llmopt::route_bench::render(&report));
            }
            Ok(())
        }
        BenchCommand::Detect {
            scenarios,
            seed,
            hours,
            flat_traffic,
            noisy_tenants,
            json,
        } => {
            anyhow::ensure!(scenarios > 0, "--scenarios must be at least 1");
            anyhow::ensure!(
                hours.is_finite() && hours > 0.0,
                "--hours must be a positive number"
            );
            let options = llmopt::detect_bench::DetectBenchOptions {
                scenarios,
                seed,
                hours,
                traffic: if flat_traffic {
                    llmopt_sim::TrafficShape::default()
                } else {
                    llmopt_sim::TrafficShape::realistic()
                },
                noisy_tenants: llmopt::detect_bench::noisy_tenants(noisy_tenants),
            };
            let report = llmopt::detect_bench::run(config, &options, &mut |i| {
                if !json {
                    eprint!("\rscenario {}/{scenarios}", i + 1);
                }
            })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                eprintln!();
                print!("{}", llmopt::detect_bench::render(&report));
            }
            Ok(())
        }
        BenchCommand::Console {
            routes,
            hours,
            loads,
            serve,
            json,
        } => {
            anyhow::ensure!(routes > 0, "--routes must be at least 1");
            anyhow::ensure!(
                hours.is_finite() && hours > 0.0 && hours <= 24.0,
                "--hours must be in (0, 24] (the console keeps 24 h)"
            );
            let (report, addr, server) =
                llmopt::console::bench::run(routes, hours, loads, serve).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "console overview, {} routes x {} h ({} windows, built in {:.1} s): \
                     median {:.1} ms, worst {:.1} ms over {} loads, {} KB per load",
                    report.routes,
                    report.hours,
                    report.windows,
                    report.build_s,
                    report.median_ms,
                    report.max_ms,
                    report.loads,
                    report.bytes / 1024
                );
            }
            if serve.is_some() {
                eprintln!("serving the benchmark's console on http://{addr}/ until Ctrl-C");
                llmopt_runtime::shutdown::on_signals().wait().await;
            }
            server.abort();
            Ok(())
        }
        BenchCommand::Nab {
            data,
            results,
            detector,
        } => {
            let started = std::time::Instant::now();
            let run = llmopt_detector::nab::run(&data, &results, &detector, &config.detector)
                .with_context(|| format!("NAB run over {}", data.display()))?;
            let elapsed = started.elapsed();
            println!(
                "scored {} rows in {} files into {} ({:.2} µs per row)",
                run.rows,
                run.files,
                results.join(&detector).display(),
                elapsed.as_secs_f64() * 1e6 / run.rows.max(1) as f64
            );
            Ok(())
        }
    }
}
