//! The quantizer: compresses a self-hosted model's weights when the decision service asks for
//! it, and says how much quality that cost.
//!
//! [`model`] is a BERT encoder on burn; [`quant`] holds the rounding grids, RTN and GPTQ;
//! [`calib`] captures the activations GPTQ needs; [`eval`] computes the quality figures;
//! [`artifact`] writes and reads packed artifacts; [`job`] runs one job end to end and
//! [`service`] runs jobs from the bus.

pub mod artifact;
pub mod calib;
pub mod error;
pub mod eval;
pub mod job;
pub mod model;
pub mod quant;
pub mod quantize;
pub mod service;
pub mod workbench;

pub use error::QuantError;
pub use job::QuantizerConfig;
pub use service::{HandledJobs, Quantizer};

/// Service name: consumer group, CloudEvents source suffix, metrics label.
pub const SERVICE_NAME: &str = "quantizer";
