//! The `notifier` service: forwards the alert topic to Alertmanager's v2 API and to a webhook.
//!
//! Operators route alerts through Alertmanager (and PagerDuty, Slack or e-mail behind it); the
//! notifier is the bridge from llmopt's alert topic: labels from the alert's dedup key parts
//! (app, route, provider, model, metric) plus `alertname` and `severity`, annotations from its
//! summary and evidence, `endsAt` on resolution. Deliveries happen before an alert is
//! acknowledged and are retried with backoff while a receiver is down, so an outage of
//! Alertmanager delays notifications and loses none (see [`shell`]).

#![warn(missing_docs)]

pub mod config;
mod core;
pub mod http;
pub mod payload;
pub mod shell;

pub use crate::config::NotifierConfig;
pub use crate::core::Notifier;
pub use crate::shell::{NotifierMetrics, NotifyEffects, FIRING_KEY};

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`.
pub const SERVICE_NAME: &str = "notifier";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
