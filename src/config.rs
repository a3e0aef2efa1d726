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
    /// How `llmopt run` judges partitions and readiness.
    pub runtime: RuntimeConfig,
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
    /// The notifier service: where alerts are forwarded (Alertmanager, a webhook).
    pub notifier: llmopt_notifier::NotifierConfig,
    /// The operator console (`llmopt console`, `llmopt demo --console`).
    pub console: crate::console::ConsoleConfig,
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

/// Runtime settings (`[runtime]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// A caught-up input partition that delivered nothing for this long (processing time) is
    /// idle: it stops holding the aggregator's watermark back.
    pub partition_idle_after_ms: u64,
    /// `/ready` is true only while the backlog of the owned partitions is at most this.
    pub ready_max_backlog: i64,
    /// Checkpoint the aggregator's per-partition state in the state store (restored on
    /// restart and when a partition moves between instances) instead of rebuilding it from
    /// the inputs.
    pub checkpoints: bool,
    /// How often checkpoints are taken (and the offsets they cover committed).
    pub checkpoint_interval_ms: u64,
    /// A service that owns partitions with records waiting but received nothing for this long
    /// leaves its consumer group and joins again (logged, and counted in
    /// `llmopt_consumer_rejoins_total`).
    pub stall_after_ms: u64,
    /// The detector, decision and actuator run as one leader among their replicas (the others
    /// are standbys outside the consumer group); a standby takes over once the leader has not
    /// renewed its lease in the state store for this long.
    pub leader_lease_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let runner = llmopt_runtime::runner::RunnerConfig::default();
        Self {
            partition_idle_after_ms: runner.partition_idle_after.as_millis() as u64,
            ready_max_backlog: runner.ready_max_backlog,
            checkpoints: true,
            checkpoint_interval_ms: runner.checkpoint_interval.as_millis() as u64,
            stall_after_ms: runner.stall_after.as_millis() as u64,
            leader_lease_ms: runner.leader_lease.as_millis() as u64,
        }
    }
}

impl RuntimeConfig {
    /// The runner settings of a long-running service.
    pub fn runner(&self) -> llmopt_runtime::runner::RunnerConfig {
        llmopt_runtime::runner::RunnerConfig {
            partition_idle_after: std::time::Duration::from_millis(self.partition_idle_after_ms),
            ready_max_backlog: self.ready_max_backlog,
            checkpoints: self.checkpoints,
            checkpoint_interval: std::time::Duration::from_millis(self.checkpoint_interval_ms),
            stall_after: std::time::Duration::from_millis(self.stall_after_ms),
            leader_lease: std::time::Duration::from_millis(self.leader_lease_ms),
            ..Default::default()
        }
    }
}

/// Environment variables holding secrets (from Kubernetes Secrets), read as plain strings.
const SECRET_VARS: [(&str, &str); 4] = [
    (
        "LLMOPT_TRANSPORT__KAFKA__SASL_USERNAME",
        "transport.kafka.sasl_username",
    ),
    (
        "LLMOPT_TRANSPORT__KAFKA__SASL_PASSWORD",
        "transport.kafka.sasl_password",
    ),
    ("LLMOPT_STATE__REDIS_PASSWORD", "state.redis_password"),
    (
        "LLMOPT_INGEST__OTLP__BEARER_TOKEN",
        "ingest.otlp.bearer_token",
    ),
];

/// The state-store key prefix of an installation whose topics start with `topic_prefix`.
fn key_prefix_for(topic_prefix: &str) -> String {
    let stem = topic_prefix.trim_end_matches(['.', '-', '_', ':']);
    if stem.is_empty() {
        "llmopt:".to_string()
    } else {
        format!("{stem}:")
    }
}

impl AppConfig {
    /// Defaults ← file (if given) ← environment.
    ///
    /// Two shorthands match the test tooling: `LLMOPT_KAFKA_BOOTSTRAP` sets the bootstrap servers
    /// and `LLMOPT_REDIS_URL` the Redis URL.
    ///
    /// Unless `state.key_prefix` is set, it follows the topic prefix (`llmopt.` → `llmopt:`), so
    /// two installations told apart by their topics do not share deduplication sets or live
    /// configuration in one Redis.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
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
        let mut config: AppConfig = Figment::from(Serialized::defaults(AppConfig::default()))
            .merge(figment.clone())
            .extract()
            .context("invalid configuration")?;
        if figment.find_value("state.key_prefix").is_err() {
            config.state.key_prefix = key_prefix_for(&config.transport.topic_prefix);
        }
        Ok(config)
    }

    /// The configuration as TOML with passwords replaced, safe to print or log.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if shown.transport.kafka.sasl_password.is_some() {
            shown.transport.kafka.sasl_password = Some("***".into());
        }
        if shown.ingest.otlp.bearer_token.is_some() {
            shown.ingest.otlp.bearer_token = Some("***".into());
        }
        if shown.state.redis_password.is_some() {
            shown.state.redis_password = Some("***".into());
        }
        for token in shown.console.tokens.values_mut() {
            *token = "***".into();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> AppConfig {
        let dir = std::env::temp_dir().join(format!(
            "llmopt-config-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("llmopt.toml");
        std::fs::write(&path, text).expect("write");
        AppConfig::load(Some(&path)).expect("load")
    }

    #[test]
    fn key_prefix_follows_the_topic_prefix_unless_set() {
        assert_eq!(key_prefix_for("llmopt."), "llmopt:");
        assert_eq!(key_prefix_for(""), "llmopt:");
        let staging = load_toml("[transport]\ntopic_prefix = \"staging.\"\n");
        assert_eq!(staging.state.key_prefix, "staging:");
        let explicit = load_toml(
            "[transport]\ntopic_prefix = \"staging.\"\n[state]\nkey_prefix = \"shared:\"\n",
        );
        assert_eq!(explicit.state.key_prefix, "shared:");
    }
}
