use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which transport the services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The in-process log: one process, no servers (`llmopt demo`).
    #[default]
    Embedded,
    /// A Kafka-protocol broker through rdkafka.
    Kafka,
}

/// Transport settings, read from the `[transport]` table of the config file and overridden by
/// `LLMOPT_TRANSPORT__*` environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportConfig {
    /// Embedded or Kafka.
    pub kind: TransportKind,
    /// Prefix of every topic name, so several installations can share a cluster.
    pub topic_prefix: String,
    /// Partitions of topics created on start.
    pub partitions: i32,
    /// Per-topic overrides of the full topic name, keyed by logical name (e.g. `alerts`).
    pub topic_names: BTreeMap<String, String>,
    /// Kafka client settings (used when `kind = "kafka"`).
    pub kafka: KafkaConfig,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            kind: TransportKind::Embedded,
            topic_prefix: "llmopt.".to_string(),
            partitions: 6,
            topic_names: BTreeMap::new(),
            kafka: KafkaConfig::default(),
        }
    }
}

/// Kafka client settings. The named fields cover what every deployment sets; anything else goes
/// to librdkafka unchanged through `properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, comma-separated `host:port`.
    pub bootstrap_servers: String,
    /// `client.id` prefix; the service name is appended.
    pub client_id: String,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl.
    pub security_protocol: String,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<String>,
    /// `ssl.ca.location`: CA bundle for verifying the brokers.
    pub ssl_ca_location: Option<String>,
    /// `session.timeout.ms`. Kafka's default is 45 s; 6 s makes group joins fast on small
    /// clusters and brokers such as tansu.
    pub session_timeout_ms: u32,
    /// Replication factor of topics created on start.
    pub replication_factor: i32,
    /// How long a publish may wait for the broker's acknowledgement.
    pub delivery_timeout_ms: u32,
    /// Extra librdkafka properties, applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".to_string(),
            client_id: "llmopt".to_string(),
            security_protocol: "plaintext".to_string(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            session_timeout_ms: 6000,
            replication_factor: 1,
            delivery_timeout_ms: 30_000,
            properties: BTreeMap::new(),
        }
    }
}
