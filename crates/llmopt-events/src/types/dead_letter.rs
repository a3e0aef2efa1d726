use serde::{Deserialize, Serialize};

use super::bind_contract;

/// A rejected record kept byte for byte with its reason (`schemas/dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    pub service: String,
    pub error_kind: String,
    pub error_message: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(default)]
    pub source_timestamp: Option<i64>,
    #[serde(default, with = "serde_bytes")]
    pub original_key: Option<Vec<u8>>,
    #[serde(default)]
    pub original_headers: Vec<Header>,
    #[serde(default, with = "serde_bytes")]
    pub original_value: Option<Vec<u8>>,
}

/// One Kafka header of the original record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub key: String,
    #[serde(default, with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

bind_contract!(DeadLetter => DeadLetter);
