//! The notifier's core: it only reads the alert topic. Everything it does is a side effect
//! (HTTP), which lives in the shell ([`crate::NotifyEffects`]) and runs before each alert is
//! acknowledged, so an alert is never acked before a receiver took it.

use llmopt_runtime::{Input, Output, Processor};
use llmopt_transport::LogicalTopic;

use crate::SERVICE_NAME;

/// Reads `alerts`; publishes nothing.
#[derive(Debug, Default)]
pub struct Notifier;

impl Processor for Notifier {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Alerts]
    }

    fn process(&mut self, _input: &Input) -> Vec<Output> {
        Vec::new()
    }
}
