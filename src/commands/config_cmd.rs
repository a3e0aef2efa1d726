use clap::Subcommand;

use llmopt::config::AppConfig;

/// `llmopt config ...`
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML (passwords redacted).
    Show,
}

pub fn run(config: &AppConfig, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => print!("{}", config.redacted_toml()?),
    }
    Ok(())
}
