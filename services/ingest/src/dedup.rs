use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llmopt_runtime::{Effects, Input, RuntimeError};
use llmopt_state::StateStore;

/// Drops redeliveries: a CloudEvent `source`+`id` seen within the horizon is a duplicate. The set
/// lives in the state store so every ingest replica shares it.
pub struct DedupEffects {
    store: Arc<dyn StateStore>,
    horizon: Duration,
}

impl DedupEffects {
    /// Deduplication against `store` over `horizon`.
    pub fn new(store: Arc<dyn StateStore>, horizon: Duration) -> Self {
        Self { store, horizon }
    }
}

#[async_trait]
impl Effects for DedupEffects {
    async fn admit(&mut self, input: &Input) -> Result<bool, RuntimeError> {
        let member = format!("{}\u{1f}{}", input.source, input.id);
        Ok(self
            .store
            .set_add("ingest-dedup", &member, self.horizon)
            .await?)
    }
}
