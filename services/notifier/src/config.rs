//! Where alerts go and how hard the notifier tries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `notifier` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierConfig {
    /// Alertmanager's base URL (`http://alertmanager:9093`); alerts are posted to
    /// `{url}/api/v2/alerts`. `http://` only: Alertmanager usually sits beside the services,
    /// put a TLS-terminating proxy in front of a remote one.
    pub alertmanager_url: Option<String>,
    /// A URL every alert state change is POSTed to as the alert topic's JSON (`id`,
    /// `dedup_key`, `status`, `labels`, ...), for chat bots and ticket systems.
    pub webhook_url: Option<String>,
    /// How often the alerts still firing are sent to Alertmanager again (ms), as Prometheus
    /// does: Alertmanager forgets alerts across its own restarts and resolves an alert that
    /// is not refreshed by its `endsAt`.
    pub resend_interval_ms: u64,
    /// A firing alert's `endsAt` is the sending time plus this (ms): if the notifier stops
    /// (for good), Alertmanager resolves its alerts after this long instead of never. Keep it
    /// a few resend intervals.
    pub firing_ttl_ms: u64,
    /// Timeout of one HTTP request (ms).
    pub request_timeout_ms: u64,
    /// Labels added to every alert sent to Alertmanager (`cluster`, `env`), as Prometheus's
    /// `external_labels`.
    pub external_labels: BTreeMap<String, String>,
    /// Base of the `generatorURL` of alerts (the console), if any: `{base}/alerts/{dedup_key}`.
    pub generator_url: Option<String>,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            alertmanager_url: None,
            webhook_url: None,
            resend_interval_ms: 60_000,
            firing_ttl_ms: 240_000,
            request_timeout_ms: 5_000,
            external_labels: BTreeMap::new(),
            generator_url: None,
        }
    }
}

impl NotifierConfig {
    /// Whether any sink is configured.
    pub fn has_sinks(&self) -> bool {
        self.alertmanager_url.is_some() || self.webhook_url.is_some()
    }
}
