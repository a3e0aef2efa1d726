//! The event contracts of llmopt.
//!
//! `schemas/*.avsc` at the repository root is the source of truth; this crate embeds those files,
//! parses them once, and pairs each with a Rust type that serialises through serde to both Avro
//! and JSON. [`wire`] puts events into CloudEvents and takes them out again, turning every way
//! a record can be wrong into a typed [`WireError`] instead of a panic.

pub mod codec;
pub mod compat;
mod contract;
mod registry;
pub mod samples;
pub mod types;
pub mod wire;

pub use codec::CodecError;
pub use contract::{Contract, EventType};
pub use registry::SchemaRegistry;
pub use types::*;
pub use wire::{AnyEvent, DataFormat, EventMeta, WireError};
