//! `llmopt bench ...`: detection benchmarks.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use llmopt::config::AppConfig;

/// `llmopt bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
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
}

pub fn run(config: &AppConfig, command: BenchCommand) -> anyhow::Result<()> {
    match command {
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
