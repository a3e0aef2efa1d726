use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use llmopt_events::compat::check_evolution;
use llmopt_events::Contract;

/// `llmopt schemas ...`
#[derive(Subcommand)]
pub enum SchemasCommand {
    /// List the event contracts: file, Avro name, CloudEvents type, fingerprint.
    List,
    /// Print one contract's schema (by file stem, e.g. `llm_call`).
    Show {
        /// Contract file stem.
        name: String,
    },
    /// Check that NEW is an allowed evolution of OLD (fields added or removed only with
    /// defaults). Exits with status 1 and the reason if not.
    Check {
        /// The schema as it is today (e.g. from the main branch).
        #[arg(long)]
        old: PathBuf,
        /// The proposed schema.
        #[arg(long)]
        new: PathBuf,
    },
}

pub fn run(command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::List => {
            println!(
                "{:<26} {:<32} {:<36} FINGERPRINT",
                "FILE", "AVRO NAME", "CLOUDEVENTS TYPE"
            );
            for c in Contract::ALL {
                let fp: String = c.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
                println!(
                    "{:<26} {:<32} {:<36} {fp}",
                    c.file_name(),
                    c.full_name(),
                    c.ce_type()
                );
            }
        }
        SchemasCommand::Show { name } => {
            let file = format!("{}.avsc", name.trim_end_matches(".avsc"));
            let contract = Contract::ALL
                .iter()
                .find(|c| c.file_name() == file)
                .with_context(|| {
                    format!("no contract named `{name}` (see `llmopt schemas list`)")
                })?;
            print!("{}", contract.source());
        }
        SchemasCommand::Check { old, new } => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            match check_evolution(&read(&old)?, &read(&new)?) {
                Ok(()) => println!(
                    "compatible: {} may replace {}",
                    new.display(),
                    old.display()
                ),
                Err(e) => {
                    eprintln!("incompatible: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}
