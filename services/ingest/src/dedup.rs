use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llmopt_runtime::{Effects, Input, Output, RuntimeError};
use llmopt_state::StateStore;

/// The state-store set of seen events (under the installation's key prefix).
pub const DEDUP_SET: &str = "ingest-dedup";

/// Drops redeliveries: a CloudEvent `source`+`id` seen within the horizon is a duplicate. The set
/// lives in the state store so every ingest replica shares it.
///
/// An event is recorded as seen only once its outputs are acknowledged by the broker (and before
/// its offset is acked), so a record redelivered after a crash is processed again rather than
/// mistaken for a duplicate: at-least-once with the same output ids, never at-most-once. Until
/// then it is held in `in_flight`, so a copy arriving meanwhile in the same instance is dropped.
pub struct DedupEffects {
    store: Arc<dyn StateStore>,
    horizon: Duration,
    in_flight: HashSet<String>,
}

impl DedupEffects {
    /// Deduplication against `store` over `horizon`.
    pub fn new(store: Arc<dyn StateStore>, horizon: Duration) -> Self {
        Self {
            store,
            horizon,
            in_flight: HashSet::new(),
        }
    }
}

fn member(input: &Input) -> String {
    format!("{}\u{1f}{}", input.source, input.id)
}

#[async_trait]
impl Effects for DedupEffects {
    async fn admit(&mut self, input: &Input) -> Result<bool, RuntimeError> {
        let member = member(input);
        if self.in_flight.contains(&member) {
            tracing::debug!(id = %input.id, partition = input.partition, offset = input.offset,
                "duplicate of an event in flight in this instance");
            return Ok(false);
        }
        if self.store.set_contains(DEDUP_SET, &member).await? {
            tracing::debug!(id = %input.id, partition = input.partition, offset = input.offset,
                "duplicate of an event already published");
            return Ok(false);
        }
        self.in_flight.insert(member);
        Ok(true)
    }

    async fn after_publish(
        &mut self,
        input: Option<&Input>,
        _outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        let Some(input) = input else {
            return Ok(());
        };
        let member = member(input);
        self.store.set_add(DEDUP_SET, &member, self.horizon).await?;
        self.in_flight.remove(&member);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use llmopt_events::{samples, AnyEvent};
    use llmopt_state::memory::MemoryStore;
    use llmopt_transport::LogicalTopic;

    use super::*;

    fn input(id: &str) -> Input {
        Input {
            topic: LogicalTopic::TelemetryRaw,
            partition: 0,
            offset: 0,
            id: id.to_string(),
            source: "gateway".to_string(),
            time_ms: None,
            event: AnyEvent::LlmCall(samples::llm_call(1)),
        }
    }

    #[tokio::test]
    async fn an_event_is_seen_only_after_its_outputs_are_acknowledged() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let mut dedup = DedupEffects::new(store.clone(), Duration::from_secs(60));
        let a = input("a");
        assert!(dedup.admit(&a).await.expect("admit"));
        // A copy while the first is in flight: dropped.
        assert!(!dedup.admit(&a).await.expect("admit"));
        // The process dies before the outputs are acknowledged: nothing was recorded, so the
        // redelivered record is processed by the next instance.
        assert!(!store
            .set_contains(DEDUP_SET, &member(&a))
            .await
            .expect("read"));
        let mut restarted = DedupEffects::new(store.clone(), Duration::from_secs(60));
        assert!(restarted.admit(&a).await.expect("admit"));
        restarted
            .after_publish(Some(&a), &[])
            .await
            .expect("record");
        // Now it is a duplicate, for every replica.
        assert!(!restarted.admit(&a).await.expect("admit"));
        let mut other = DedupEffects::new(store, Duration::from_secs(60));
        assert!(!other.admit(&a).await.expect("admit"));
        assert!(other.admit(&input("b")).await.expect("admit"));
    }
}
