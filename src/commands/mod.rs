//! One module per subcommand.

pub mod actuator;
pub mod bench;
pub mod config_cmd;
pub mod console;
pub mod decisions;
pub mod demo;
pub mod loadgen;
pub mod probe;
pub mod quantize;
pub mod report;
pub mod run;
pub mod schemas;
pub mod topics;
