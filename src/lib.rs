//! The `llmopt` application: configuration, the assembly of the closed loop's services, and the
//! in-process demo driver. The `llmopt` binary is a thin CLI over this library, and the
//! end-to-end tests drive the same code.

pub mod config;
pub mod console;
pub mod cost_report;
pub mod demo;
pub mod detect_bench;
pub mod loadgen;
pub mod pipeline;
pub mod route_bench;
pub mod telemetry;
