//! CloudEvents 1.0 and its Kafka protocol binding.
//!
//! Every record llmopt writes to Kafka is a CloudEvent in *binary content mode*: the attributes
//! travel as `ce_*` headers, the data's media type as the `content-type` header and the
//! `partitionkey` extension as the message key. Producers outside llmopt may also send
//! *structured mode* (`application/cloudevents+json`), so [`decode`] accepts both. Decoding never
//! panics: every problem becomes a [`CeError`] naming the attribute at fault, so the ingest service
//! can put the original bytes in the dead-letter topic with a reason an operator understands.

mod error;
mod event;
mod kafka;
mod structured;

pub use error::CeError;
pub use event::{CloudEvent, SPEC_VERSION};
pub use kafka::{
    binary_identity, decode, to_binary, to_structured, ContentMode, DecodeLimits, KafkaMessage,
    CONTENT_TYPE_HEADER, STRUCTURED_JSON_CONTENT_TYPE,
};
