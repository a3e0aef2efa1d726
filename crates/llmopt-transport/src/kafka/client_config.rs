use rdkafka::ClientConfig;

use crate::KafkaConfig;

/// Settings shared by producers, consumers and the admin client: where the brokers are and how
/// to authenticate to them.
pub(crate) fn common(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", client_id)
        .set("security.protocol", &config.security_protocol);
    let optional = [
        ("sasl.mechanism", &config.sasl_mechanism),
        ("sasl.username", &config.sasl_username),
        ("sasl.password", &config.sasl_password),
        ("ssl.ca.location", &config.ssl_ca_location),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            cc.set(key, v);
        }
    }
    cc
}

fn apply_overrides(mut cc: ClientConfig, config: &KafkaConfig) -> ClientConfig {
    for (key, value) in &config.properties {
        cc.set(key, value);
    }
    cc
}

/// Idempotent producer with Kafka's default (murmur2) partitioner, so keys land where Java
/// clients and the embedded transport put them.
pub(crate) fn producer(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut cc = common(config, client_id);
    cc.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
    apply_overrides(cc, config)
}

/// At-least-once consumer: offsets are stored only on ack and committed only when the runner
/// says so (`Consumer::commit`), never in the background: a service that checkpoints its state
/// commits exactly the offsets its checkpoints cover, which a background commit would overtake.
pub(crate) fn consumer(config: &KafkaConfig, client_id: &str, group: &str) -> ClientConfig {
    let mut cc = common(config, client_id);
    cc.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Reaching a partition's end is an event: the runner trusts it over the broker's
        // reported end, which can lag the log.
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(100).to_string(),
        );
    apply_overrides(cc, config)
}

/// Admin client for topic creation.
pub(crate) fn admin(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    apply_overrides(common(config, client_id), config)
}
