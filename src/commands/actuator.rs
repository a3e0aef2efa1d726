//! `llmopt actuator rebuild`: recomputes the live routing config from the config-change topic
//! alone and writes it to the state store, the way a projection is rebuilt in an event-sourced
//! system (after a Redis loss, or to audit what the store holds).

use clap::Subcommand;
use llmopt::config::AppConfig;
use llmopt_actuator::{live_key, write_live_config, Actuator};
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire;
use llmopt_events::{ConfigChange, SchemaRegistry};
use llmopt_transport::read_topic;
use llmopt_transport::{LogicalTopic, TopicNames, Transport};

use crate::commands::run::{build_state, build_transport};

/// `llmopt actuator ...`
#[derive(Subcommand)]
pub enum ActuatorCommand {
    /// Replay the config-change topic from the start and rewrite every route's live config.
    Rebuild {
        /// Only print what the topic says; do not touch the store.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: &AppConfig, command: ActuatorCommand) -> anyhow::Result<()> {
    let ActuatorCommand::Rebuild { dry_run } = command;
    let transport = build_transport(config, "actuator-rebuild")?;
    let names = TopicNames::new(&config.transport);
    let changes = read_changes(transport.as_ref(), &names).await?;
    let configs = Actuator::rebuild(changes.iter().cloned());
    let store = if dry_run {
        None
    } else {
        Some(build_state(config).await?)
    };
    println!("{} config changes read", changes.len());
    for ((app, route), cfg) in &configs {
        let targets: Vec<String> = cfg
            .targets
            .iter()
            .map(|t| format!("{}/{}={}", t.provider, t.model, t.weight))
            .collect();
        println!("{app}/{route} v{}: {}", cfg.version, targets.join(", "));
        if let Some(store) = &store {
            // The topic is the truth: replace whatever the store holds.
            store.delete(&live_key(app, route)).await?;
            write_live_config(store.as_ref(), cfg).await?;
        }
    }
    Ok(())
}

/// Every config change on the topic, in topic order.
async fn read_changes(
    transport: &dyn Transport,
    names: &TopicNames,
) -> anyhow::Result<Vec<ConfigChange>> {
    let topic = names.name(LogicalTopic::ConfigChanges);
    let registry = SchemaRegistry::current();
    let mut changes = Vec::new();
    for m in read_topic(transport, &topic, "rebuild").await? {
        let record = KafkaMessage {
            key: m.key,
            headers: m.headers,
            value: m.value,
        };
        match wire::decode_kafka::<ConfigChange>(&record, &Default::default(), &registry) {
            Ok((_, _, change)) => changes.push(change),
            Err(e) => tracing::warn!(offset = m.offset, error = %e, "skipping undecodable record"),
        }
    }
    Ok(changes)
}
