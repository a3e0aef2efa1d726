use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::client_config;
use crate::{KafkaConfig, TopicSpec, TransportError};

/// Creates missing topics; a topic that already exists is fine, whatever its partition count.
pub(crate) async fn ensure_topics(
    config: &KafkaConfig,
    client_id: &str,
    topics: &[TopicSpec],
) -> Result<(), TransportError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config::admin(config, client_id)
        .create()
        .map_err(|e| TransportError::kafka("create admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| TransportError::kafka("create topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(TransportError::Config(format!(
                    "cannot create topic `{name}`: {code}"
                )))
            }
        }
    }
    Ok(())
}
