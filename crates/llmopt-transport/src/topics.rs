use crate::TransportConfig;

/// The topics of the pipeline, by role. Their Kafka names come from configuration so that the
/// code never spells a topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalTopic {
    /// Raw telemetry from producers (ingest's input).
    TelemetryRaw,
    /// Validated, priced, deduplicated telemetry (aggregator's input).
    Telemetry,
    /// Events too late for any window, kept rather than dropped.
    TelemetryLate,
    /// Window aggregates.
    Windows,
    /// Detected anomalies.
    Anomalies,
    /// Operator alerts (JSON).
    Alerts,
    /// Decisions and their state changes.
    Decisions,
    /// Applied routing config changes; the live config is their projection.
    ConfigChanges,
    /// Quantization jobs.
    QuantizationJobs,
    /// Published artifacts and failures.
    Artifacts,
    /// Records a service could not accept, with the reason.
    DeadLetter,
}

impl LogicalTopic {
    /// Every topic of the pipeline.
    pub const ALL: &'static [LogicalTopic] = &[
        LogicalTopic::TelemetryRaw,
        LogicalTopic::Telemetry,
        LogicalTopic::TelemetryLate,
        LogicalTopic::Windows,
        LogicalTopic::Anomalies,
        LogicalTopic::Alerts,
        LogicalTopic::Decisions,
        LogicalTopic::ConfigChanges,
        LogicalTopic::QuantizationJobs,
        LogicalTopic::Artifacts,
        LogicalTopic::DeadLetter,
    ];

    /// Name used in configuration (`topic_names`) and, after the prefix, in Kafka.
    pub fn logical_name(self) -> &'static str {
        match self {
            LogicalTopic::TelemetryRaw => "telemetry.raw",
            LogicalTopic::Telemetry => "telemetry",
            LogicalTopic::TelemetryLate => "telemetry.late",
            LogicalTopic::Windows => "windows",
            LogicalTopic::Anomalies => "anomalies",
            LogicalTopic::Alerts => "alerts",
            LogicalTopic::Decisions => "decisions",
            LogicalTopic::ConfigChanges => "config.changes",
            LogicalTopic::QuantizationJobs => "quantization.jobs",
            LogicalTopic::Artifacts => "artifacts",
            LogicalTopic::DeadLetter => "deadletter",
        }
    }
}

/// A topic to create if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
}

/// Resolves logical topics to Kafka names: an explicit override, else prefix + logical name.
#[derive(Debug, Clone)]
pub struct TopicNames {
    config: TransportConfig,
}

impl TopicNames {
    /// Names as configured.
    pub fn new(config: &TransportConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// Full topic name of `topic`.
    pub fn name(&self, topic: LogicalTopic) -> String {
        let logical = topic.logical_name();
        match self.config.topic_names.get(logical) {
            Some(name) => name.clone(),
            None => format!("{}{}", self.config.topic_prefix, logical),
        }
    }

    /// Consumer group of a service: prefixed like the topics, so installations sharing a
    /// cluster never share a group.
    pub fn group(&self, service: &str) -> String {
        format!("{}{}", self.config.topic_prefix, service)
    }

    /// Specs of every pipeline topic, for creation on start.
    pub fn all_specs(&self) -> Vec<TopicSpec> {
        LogicalTopic::ALL
            .iter()
            .map(|t| TopicSpec {
                name: self.name(*t),
                partitions: self.config.partitions,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_overrides() {
        let mut config = TransportConfig::default();
        let names = TopicNames::new(&config);
        assert_eq!(names.name(LogicalTopic::Alerts), "llmopt.alerts");
        config.topic_prefix = "prod.".into();
        config
            .topic_names
            .insert("alerts".into(), "ops.llm-alerts".into());
        let names = TopicNames::new(&config);
        assert_eq!(names.name(LogicalTopic::Alerts), "ops.llm-alerts");
        assert_eq!(names.name(LogicalTopic::Windows), "prod.windows");
        assert_eq!(names.all_specs().len(), LogicalTopic::ALL.len());
    }
}
