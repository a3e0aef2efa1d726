use clap::Subcommand;
use llmopt_transport::kafka::KafkaTransport;
use llmopt_transport::{TopicNames, Transport, TransportKind};

use llmopt::config::AppConfig;

/// `llmopt topics ...`
#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Print the topic names the configuration gives (prefix and overrides applied).
    List,
    /// Create every missing pipeline topic with the configured partition count (services also
    /// do this on start).
    Ensure,
}

pub async fn run(config: &AppConfig, command: TopicsCommand) -> anyhow::Result<()> {
    let names = TopicNames::new(&config.transport);
    match command {
        TopicsCommand::List => {
            for spec in names.all_specs() {
                println!("{}", spec.name);
            }
        }
        TopicsCommand::Ensure => {
            anyhow::ensure!(
                config.transport.kind == TransportKind::Kafka,
                "topics ensure needs transport.kind = \"kafka\" (the embedded log lives inside one process)"
            );
            let transport = KafkaTransport::new(&config.transport.kafka, "admin")?;
            let specs = names.all_specs();
            transport.ensure_topics(&specs).await?;
            for spec in specs {
                println!("{} ({} partitions requested)", spec.name, spec.partitions);
            }
        }
    }
    Ok(())
}
