//! The actuator's shell effect: keeping the live routing config in the state store equal to the
//! projection of the config-change topic.

use std::sync::Arc;

use async_trait::async_trait;
use llmopt_events::AnyEvent;
use llmopt_runtime::{Effects, Input, RuntimeError};
use llmopt_state::StateStore;

use crate::{write_live_config, LiveConfigError, RoutingConfig};

/// Writes every config change the actuator reads (its own, and INITIAL or MANUAL ones from
/// operators) to the store with compare-and-set on the version, so gateways reading the store see
/// exactly the topic's latest version per route. Replays are harmless: an older or equal version
/// is not written again.
pub struct LiveConfigEffects {
    store: Arc<dyn StateStore>,
}

impl LiveConfigEffects {
    /// Effects writing to `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Effects for LiveConfigEffects {
    async fn admit(&mut self, input: &Input) -> Result<bool, RuntimeError> {
        if let AnyEvent::ConfigChange(change) = &input.event {
            let cfg = RoutingConfig::from_change(change);
            match write_live_config(self.store.as_ref(), &cfg).await {
                Ok(true) => tracing::info!(app = %cfg.app, route = %cfg.route,
                    version = cfg.version, "live routing config updated"),
                Ok(false) => {}
                // A state-store outage is waited out by the runner (with backoff, not ready
                // meanwhile): skipping the write would leave a gap no later version can close.
                Err(LiveConfigError::State(e)) if e.is_transient() => return Err(e.into()),
                // A gap means a version never reached the store (e.g. it was wiped): keep
                // serving, and say how to repair it.
                Err(e) => tracing::error!(error = %e,
                    "live config not updated; run `llmopt actuator rebuild`"),
            }
        }
        Ok(true)
    }
}
