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
    /// OpenTelemetry export (traces and metrics over OTLP).
    pub telemetry: crate::telemetry::TelemetryConfig,
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

/// Environment variables holding secrets (from Kubernetes Secrets), read as plain strings.
const SECRET_VARS: [(&str, &str); 3] = [
    (
        "LLMOPT_TRANSPORT__KAFKA__SASL_USERNAME",
        "transport.kafka.sasl_username",
    ),
    (
        "LLMOPT_TRANSPORT__KAFKA__SASL_PASSWORD",
        "transport.kafka.sasl_password",
    ),
    ("LLMOPT_STATE__REDIS_PASSWORD", "state.redis_password"),
];

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
                .filter(|key| {
                    !SECRET_VARS
                        .iter()
                        .any(|(var, _)| key.as_str().eq_ignore_ascii_case(&var["LLMOPT_".len()..]))
                })
                .split("__"),
        );
        if let Ok(bootstrap) = std::env::var("LLMOPT_KAFKA_BOOTSTRAP") {
            figment = figment.merge(("transport.kafka.bootstrap_servers", bootstrap));
        }
        if let Ok(url) = std::env::var("LLMOPT_REDIS_URL") {
            figment = figment.merge(("state.redis_url", url));
        }
        // Secrets are taken verbatim: figment would parse `123456` as a number or `[x` as an
        // array, and a password that is all digits must still be a password.
        for (var, key) in SECRET_VARS {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge((key, value));
            }
        }
        figment.extract().context("invalid configuration")
    }

    /// The configuration as TOML with passwords replaced, safe to print or log.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if shown.transport.kafka.sasl_password.is_some() {
            shown.transport.kafka.sasl_password = Some("***".into());
        }
        if shown.state.redis_password.is_some() {
            shown.state.redis_password = Some("***".into());
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
