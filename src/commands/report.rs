//! `llmopt report cost`: the cost report of the current day, week or month, read from the
//! windows, config-change and decision topics (see [`llmopt::cost_report`]).

use clap::Subcommand;
use llmopt::config::AppConfig;
use llmopt::cost_report::{self, ReportPeriod};
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire;
use llmopt_events::{ConfigChange, Decision, EventType, SchemaRegistry, WindowAggregate};
use llmopt_transport::{read_topic, LogicalTopic, TopicNames, Transport};

use crate::commands::run::build_transport;

/// `llmopt report ...`
#[derive(Subcommand)]
pub enum ReportCommand {
    /// Spend by app, route, model and tenant of the period holding the newest window, and the
    /// savings of each routing decision.
    Cost {
        /// The calendar period (UTC).
        #[arg(long, value_enum, default_value = "day")]
        period: ReportPeriod,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &AppConfig, command: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Cost { period, json } = command;
    let transport = build_transport(config, "report")?;
    let names = TopicNames::new(&config.transport);
    let windows: Vec<WindowAggregate> =
        read_events(transport.as_ref(), &names, LogicalTopic::Windows).await?;
    let changes: Vec<ConfigChange> =
        read_events(transport.as_ref(), &names, LogicalTopic::ConfigChanges).await?;
    let decisions: Vec<Decision> =
        read_events(transport.as_ref(), &names, LogicalTopic::Decisions).await?;
    let Some(report) = cost_report::build(&windows, &changes, &decisions, period) else {
        anyhow::bail!(
            "no window aggregates on {}",
            names.name(LogicalTopic::Windows)
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", cost_report::render(&report));
    }
    Ok(())
}

/// Every event of type `T` on `topic`, in topic order; records of other types are skipped.
async fn read_events<T: EventType>(
    transport: &dyn Transport,
    names: &TopicNames,
    topic: LogicalTopic,
) -> anyhow::Result<Vec<T>> {
    let registry = SchemaRegistry::current();
    let mut out = Vec::new();
    for m in read_topic(transport, &names.name(topic), "report").await? {
        let record = KafkaMessage {
            key: m.key,
            headers: m.headers,
            value: m.value,
        };
        match wire::decode_kafka::<T>(&record, &Default::default(), &registry) {
            Ok((_, _, event)) => out.push(event),
            Err(e) => tracing::warn!(offset = m.offset, error = %e, "skipping undecodable record"),
        }
    }
    Ok(out)
}
