//! The configuration of every llmopt process: built-in defaults, then the config file, then
//! `LLMOPT_*` environment variables (`__` separates levels), as twelve-factor deployments and
//! Helm charts expect.

use std::path::Path;

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use llmopt_aggregator::AggregatorConfig;
use llmopt_decision::DecisionConfig;
use llmopt_detector::DetectorConfig;
use llmopt_ingest::IngestConfig;
use llmopt_quantizer::QuantizerConfig;
use llmopt_state::StateConfig;
use llmopt_transport::TransportConfig;
use serde::{Deserialize, Serialize};

/// Everything a process reads from configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// Where records travel.
    pub transport: TransportConfig,
    /// Where state lives.
    pub state: StateConfig,
    /// The admin endpoint of `llmopt run`.
    pub admin: AdminConfig,
    /// The ingest service.
    pub ingest: IngestConfig,
    /// The aggregator service.
    pub aggregator: AggregatorConfig,
    /// The detector service.
    pub detector: DetectorConfig,
    /// The decision service.
    pub decision: DecisionConfig,
    /// The quantizer service and `llmopt quantize`.
    pub quantizer: QuantizerConfig,
}

/// Admin endpoint settings (`[admin]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Address of `/health`, `/ready` and `/metrics`.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".to_string(),
        }
    }
}

impl AppConfig {
    /// Defaults ← file (if given) ← environment.
    ///
    /// Two shorthands match the test tooling: `LLMOPT_KAFKA_BOOTSTRAP` sets the bootstrap servers
    /// and `LLMOPT_REDIS_URL` the Redis URL.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(AppConfig::default()));
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("LLMOPT_")
                .ignore(&["KAFKA_BOOTSTRAP", "REDIS_URL", "CONFIG", "LOG", "PYTHON"])
                .split("__"),
        );
        if let Ok(bootstrap) = std::env::var("LLMOPT_KAFKA_BOOTSTRAP") {
            figment = figment.merge(("transport.kafka.bootstrap_servers", bootstrap));
        }
        if let Ok(url) = std::env::var("LLMOPT_REDIS_URL") {
            figment = figment.merge(("state.redis_url", url));
        }
        figment.extract().context("invalid configuration")
    }

    /// The configuration as TOML with passwords replaced, safe to print or log.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if shown.transport.kafka.sasl_password.is_some() {
            shown.transport.kafka.sasl_password = Some("***".into());
        }
        if let Some(at) = shown.state.redis_url.rfind('@') {
            if let Some(scheme) = shown.state.redis_url.find("://") {
                if at > scheme {
                    shown.state.redis_url = format!(
                        "{}://***{}",
                        &shown.state.redis_url[..scheme],
                        &shown.state.redis_url[at..]
                    );
                }
            }
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}
