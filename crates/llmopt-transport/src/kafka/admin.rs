use std::collections::HashSet;
use std::sync::Arc;
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
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        client_config::admin(config, client_id)
            .create()
            .map_err(|e| TransportError::kafka("create admin client", e))?,
    );
    // Only the missing ones are created: a broker asked to create topics that exist should
    // answer TopicAlreadyExists, but tansu (memory storage) was seen to leave a consumer of a
    // topic that several services "created" at once reading nothing, and five services starting
    // together each asked for all eleven topics.
    let existing: HashSet<String> = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect::<HashSet<_>>()
                })
        })
        .await
        .map_err(|e| TransportError::Timeout(format!("metadata task failed: {e}")))?
        .map_err(|e| TransportError::kafka("metadata", e))?
    };
    let missing: Vec<&TopicSpec> = topics
        .iter()
        .filter(|t| !existing.contains(&t.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
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
