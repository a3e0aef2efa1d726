//! `llmopt decisions list|approve|reject`: the human side of propose mode.
//!
//! The decisions topic is the source of truth: listing reads it from the beginning (with a
//! throw-away consumer group) and keeps each decision's latest state; approving or rejecting
//! publishes the same decision in state APPROVED or REJECTED, which the decision service accepts
//! only from PROPOSED.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire;
use llmopt_events::{Decision, DecisionState, SchemaRegistry};
use llmopt_transport::{LogicalTopic, TopicNames, Transport};

use crate::commands::run::build_transport;
use llmopt::config::AppConfig;
use llmopt_transport::read_topic;

/// `llmopt decisions ...`
#[derive(Subcommand)]
pub enum DecisionsCommand {
    /// List decisions with their latest state.
    List {
        /// Only decisions in this state (e.g. PROPOSED).
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve a proposed decision.
    Approve {
        /// Decision id, as `list` shows it.
        id: String,
    },
    /// Reject a proposed decision.
    Reject {
        /// Decision id, as `list` shows it.
        id: String,
    },
}

pub async fn run(config: &AppConfig, command: DecisionsCommand) -> anyhow::Result<()> {
    let transport = build_transport(config, "cli")?;
    let names = TopicNames::new(&config.transport);
    let latest = read_latest(transport.as_ref(), &names).await?;
    match command {
        DecisionsCommand::List { state } => {
            for d in latest.values() {
                let shown = format!("{:?}", d.state).to_uppercase();
                if state
                    .as_deref()
                    .is_some_and(|s| !s.eq_ignore_ascii_case(&shown))
                {
                    continue;
                }
                println!(
                    "{:<10} {:<55} {:<24} {}",
                    shown,
                    d.id,
                    format!("{:?}", d.strategy),
                    d.reason
                );
            }
        }
        DecisionsCommand::Approve { id } => {
            set_state(
                transport.as_ref(),
                &names,
                &latest,
                &id,
                DecisionState::Approved,
            )
            .await?
        }
        DecisionsCommand::Reject { id } => {
            set_state(
                transport.as_ref(),
                &names,
                &latest,
                &id,
                DecisionState::Rejected,
            )
            .await?
        }
    }
    Ok(())
}

/// Latest state of every decision on the topic.
pub async fn read_latest(
    transport: &dyn Transport,
    names: &TopicNames,
) -> anyhow::Result<BTreeMap<String, Decision>> {
    let topic = names.name(LogicalTopic::Decisions);
    let registry = SchemaRegistry::current();
    let mut latest = BTreeMap::new();
    for m in read_topic(transport, &topic, "cli").await? {
        let record = KafkaMessage {
            key: m.key,
            headers: m.headers,
            value: m.value,
        };
        if let Ok((_, _, d)) =
            wire::decode_kafka::<Decision>(&record, &Default::default(), &registry)
        {
            latest.insert(d.id.clone(), d);
        }
    }
    Ok(latest)
}

async fn set_state(
    transport: &dyn Transport,
    names: &TopicNames,
    latest: &BTreeMap<String, Decision>,
    id: &str,
    state: DecisionState,
) -> anyhow::Result<()> {
    let current = latest
        .get(id)
        .with_context(|| format!("no decision `{id}` on the decisions topic"))?;
    anyhow::ensure!(
        current.state == DecisionState::Proposed,
        "decision `{id}` is {:?}, only PROPOSED decisions can be approved or rejected",
        current.state
    );
    // Who decided: the operator's login, as the console records its token's name.
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    llmopt::console::api::publish_decided_from(
        transport,
        names,
        current,
        state,
        &by,
        None,
        "llmopt/cli",
    )
    .await?;
    println!("{id}: {:?}", state);
    Ok(())
}
