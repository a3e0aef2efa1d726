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

    /// A long job for `input` (minutes: the quantizer's), to run instead of
    /// [`Processor::process`] and off the consumer's thread. The runtime pauses the input
    /// partitions and runs the job on a blocking thread while the consumer keeps polling, so
    /// the worker stays in its group however long the job takes; it then publishes the outputs
    /// the job returns and acks the input only after they are acknowledged (so a job
    /// interrupted by a crash is delivered again). `None`: process the input in line.
    fn job(&mut self, _input: &Input) -> Option<Job> {
        None
    }

    /// Whether `input` is new to the core's state. `false` drops it as a duplicate of an input
    /// already counted (`llmopt_duplicates_total`, no outputs). At-least-once delivery repeats
    /// inputs after a crash upstream (with the same id and bytes); a core that aggregates keeps
    /// what it has counted in its checkpointed state so that such a copy counts once. It runs
    /// after [`Processor::validate`], before the shell's state-store admission and the
    /// processing itself, and may record the input as seen: it is only called for inputs that
    /// are then processed or dropped.
    fn admit(&mut self, _input: &Input) -> bool {
        true
    }

    /// Checks an input before processing; a rejection sends the original record to the
    /// dead-letter topic with the reason instead of processing it. Most cores accept everything
    /// that decodes; ingest validates telemetry here.
    fn validate(&self, _input: &Input) -> Result<(), Rejection> {
        Ok(())
    }

    /// What the runtime knows about an input partition and the core cannot see in its events:
    /// whether records are waiting there, whether it has gone quiet (judged in processing time),
    /// or that this instance no longer owns it. Called only when a partition's state changes,
    /// at points that are deterministic for in-process drains; the outputs (windows an
    /// advanced watermark closes, say) are published like a record's outputs. Event-time cores
    /// use it to hold their watermark for a partition with a backlog instead of judging it
    /// idle, and to skip a partition that is really silent; stateless cores ignore it.
    fn on_partition(
        &mut self,
        _topic: LogicalTopic,
        _partition: i32,
        _state: PartitionState,
    ) -> Vec<Output> {
        Vec::new()
    }

    /// The state this core keeps for the records of one input partition, serialised for a
    /// checkpoint; `None` when it keeps none (then the runtime checkpoints nothing for it). The
    /// runtime takes it when every input read so far is acknowledged, stores it with the offset
    /// it covers, and hands it to [`Processor::restore`] on whichever instance owns the
    /// partition next. A core with per-partition state drops a partition's state when told
    /// [`PartitionState::Revoked`].
    fn checkpoint(&self, _topic: LogicalTopic, _partition: i32) -> Option<Vec<u8>> {
        None
    }

    /// Takes back the state [`Processor::checkpoint`] wrote for a partition this instance has
    /// just been assigned (before any of its records is processed).
    fn restore(
        &mut self,
        _topic: LogicalTopic,
        _partition: i32,
        _state: &[u8],
    ) -> Result<(), String> {
        Ok(())
    }

    /// Whether the core keeps its state per input partition (the default) or as one whole
    /// across all of them; the runtime checkpoints it accordingly (see [`StateScope`]).
    fn state_scope(&self) -> StateScope {
        StateScope::PerPartition
    }

    /// The whole state of a [`StateScope::Whole`] core, serialised for a checkpoint that also
    /// records every input partition's offset; `None` when there is nothing to checkpoint.
    fn checkpoint_whole(&self) -> Option<Vec<u8>> {
        None
    }

    /// Takes back the state [`Processor::checkpoint_whole`] wrote, when this instance joins its
    /// group (before any record is processed).
    fn restore_whole(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// How a core's state maps onto its input partitions, which decides how it is checkpointed and
/// whether the service scales out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateScope {
    /// State per input partition ([`Processor::checkpoint`]): each partition's state moves
    /// with the partition, so any number of instances can share the group (partitions are the
    /// unit of parallelism). Stateless cores are trivially per partition.
    PerPartition,
    /// One state across every input partition and topic ([`Processor::checkpoint_whole`]):
    /// decisions that need the whole fleet's view (or a topic joined with another that is not
    /// co-partitioned). The checkpoint records every input partition's offset and is claimed
    /// per consumer group: such a service runs as one instance. If a second one joins the
    /// group anyway, its claim fences the first, which stops at its next checkpoint with an
    /// error naming the record rather than go on acting on half the inputs.
    Whole,
}

/// A long job a core hands the runtime (see [`Processor::job`]): runs once, on a blocking
/// thread, and returns the outputs to publish.
pub type Job = Box<dyn FnOnce() -> Vec<Output> + Send + 'static>;

/// An input partition's state as the runtime sees it (see [`Processor::on_partition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionState {
    /// Owned, with records not read yet (or not known to have none yet, just after
    /// assignment): its next records may be older than anything read elsewhere.
    Behind,
    /// Owned and read up to its end.
    CaughtUp,
    /// Owned, read up to its end and delivering nothing for the runner's idle interval:
    /// Flink's `withIdleness`, Kafka Streams' `max.task.idle.ms`.
    Idle,
    /// No longer owned by this instance (rebalance or shutdown).
    Revoked,
}

/// Why a core refuses an input: becomes the dead-letter record's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable, machine-readable reason (metrics label, `error_kind`).
    pub kind: &'static str,
    /// Human-readable reason naming the offending field.
    pub message: String,
}
