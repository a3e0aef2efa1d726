//! The shell around the service cores.
//!
//! A core is a deterministic state machine ([`Processor`]): decoded events in, events out, time
//! only from event timestamps. The runner moves bytes between the transport and the core:
//! decode (dead-lettering what cannot be decoded), call the core, publish its outputs, and ack the
//! input only once every output is acknowledged.

mod processor;

pub use processor::{Input, Output, Processor};
