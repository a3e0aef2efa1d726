//! The shell around the service cores.
//!
//! A core is a deterministic state machine ([`Processor`]): decoded events in, events out, time
//! only from event timestamps. The [`runner`] moves bytes between the transport and the core:
//! decode (dead-lettering what cannot be decoded or validated, with the original bytes), call the
//! core, publish its outputs, and ack the input only once every output is acknowledged (the
//! at-least-once pattern). [`admin`] serves `/health`, `/ready` and Prometheus `/metrics`;
//! [`shutdown`] turns SIGTERM into a graceful stop; [`trace`] carries W3C trace context across
//! the Kafka hop.

pub mod admin;
mod checkpoint;
mod dead_letter;
mod effects;
mod error;
pub mod health;
mod lease;
pub mod metrics;
mod processor;
pub mod runner;
pub mod shutdown;
pub mod trace;

pub use dead_letter::dead_letter_for;
pub use effects::{Effects, NoEffects};
pub use error::RuntimeError;
pub use processor::{Input, Job, Output, PartitionState, Processor, Rejection, StateScope};
