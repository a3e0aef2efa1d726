use llmopt_events::AnyEvent;
use llmopt_transport::LogicalTopic;

/// One decoded input event, with the CloudEvents attributes a core may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Topic the event came from.
    pub topic: LogicalTopic,
    /// Partition it came from (watermarks are tracked per partition).
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// CloudEvents `id`.
    pub id: String,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `time` in ms since epoch, if the producer set it.
    pub time_ms: Option<i64>,
    /// The event.
    pub event: AnyEvent,
}

/// An event a core wants published. Its id must be deterministic (derived from inputs only) so
/// that replaying the input reproduces the same output ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Topic to publish to.
    pub topic: LogicalTopic,
    /// CloudEvents `id`.
    pub id: String,
    /// Kafka key (`partitionkey`): events of one entity stay in order on one partition.
    pub key: String,
    /// Event time (ms since epoch): the CloudEvents `time`.
    pub time_ms: i64,
    /// The event.
    pub event: AnyEvent,
}

/// A service core: a deterministic state machine driven by its input events.
///
/// Implementations must not read the wall clock, the environment or a random source that is not
/// seeded from configuration: the same inputs in the same order produce the same outputs.
pub trait Processor: Send + 'static {
    /// Service name: consumer group, CloudEvents `source` suffix, metrics label.
    fn name(&self) -> &'static str;

    /// Topics this core consumes.
    fn inputs(&self) -> Vec<LogicalTopic>;

    /// Handles one input event and returns the events to publish, in order.
    fn process(&mut self, input: &Input) -> Vec<Output>;

    /// Checks an input before processing; a rejection sends the original record to the
    /// dead-letter topic with the reason instead of processing it. Most cores accept everything
    /// that decodes; ingest validates telemetry here.
    fn validate(&self, _input: &Input) -> Result<(), Rejection> {
        Ok(())
    }
}

/// Why a core refuses an input: becomes the dead-letter record's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable, machine-readable reason (metrics label, `error_kind`).
    pub kind: &'static str,
    /// Human-readable reason naming the offending field.
    pub message: String,
}
