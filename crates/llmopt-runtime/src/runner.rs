//! The consume → process → publish → ack loop, the same for every service and transport.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_cloudevents::{DecodeLimits, KafkaMessage};
use llmopt_events::wire::{DataFormat, EventMeta, WireError};
use llmopt_events::{AnyEvent, SchemaRegistry};
use llmopt_transport::{
    Consumer, Delivered, InboundMessage, LogicalTopic, OutboundMessage, PartitionProgress,
    PendingDelivery, TopicNames, TopicPartition, Transport, TransportError,
};

use tracing::Instrument;

use crate::checkpoint::{self, Claim, WholeState};
use crate::health::Health;
use crate::lease::{self, Lease};
use crate::metrics::ServiceMetrics;
use crate::shutdown::Shutdown;
use crate::{
    dead_letter_for, trace, Effects, Input, Output, PartitionState, Processor, RuntimeError,
    StateScope,
};
use llmopt_state::StateStore;

/// How often consumer lag is exported (read from the transport: on Kafka, librdkafka's statistics).
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// How often the run loop re-reads its assignment and each partition's progress, to tell the
/// core about backlogs, idle partitions and revocations.
const PARTITION_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How long each poll waits while a core's job runs (the consumer's partitions are paused; the
/// polls keep the member in its group).
const JOB_POLL: Duration = Duration::from_millis(200);

/// How often acked offsets are committed while records keep coming (without checkpoints).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Without checkpoints: commit acked offsets after this many inputs, and at least every
    /// second while records come (and whenever the consumer is caught up).
    pub commit_every: usize,
    /// How long one poll waits before the loop checks for shutdown and readiness.
    pub poll_timeout: Duration,
    /// Size limit of input records.
    pub limits: DecodeLimits,
    /// Stop once this many consecutive polls found nothing (bounded runs: replay, tests); `None`
    /// runs until shutdown.
    pub stop_after_idle_polls: Option<u32>,
    /// Consumer group; the topic prefix + service name when `None`. A new group re-reads its
    /// inputs from the start, which is how a replay is run.
    pub group: Option<String>,
    /// Before consuming, rebuild the core's state by replaying its inputs up to the group's
    /// committed offsets (outputs discarded: they were published before). Stateful cores need
    /// it after a restart; with no committed offsets there is nothing to replay.
    pub rebuild_state: bool,
    /// A caught-up partition that delivered nothing for this long (processing time) is
    /// reported [`PartitionState::Idle`], so it stops holding event-time watermarks back.
    pub partition_idle_after: Duration,
    /// `/ready` is true only while the owned partitions' backlog is at most this many records.
    pub ready_max_backlog: i64,
    /// With checkpoints ([`Runner::with_checkpoints`]): how often the core's per-partition state
    /// is checkpointed and the offsets it covers committed.
    pub checkpoint_interval: Duration,
    /// Whether the shell gives cores that support it per-partition checkpoints (long-running
    /// services) instead of rebuilding their state from their inputs (the runner itself only
    /// checkpoints with [`Runner::with_checkpoints`]).
    pub checkpoints: bool,
    /// A member that owns partitions with records waiting but has received nothing for this
    /// long leaves its consumer group and joins again (see [`Stage::run`]).
    pub stall_after: Duration,
    /// With checkpoints, a [`StateScope::Whole`] core runs as one leader among its replicas:
    /// the others wait as standbys outside the consumer group and take over once the leader
    /// has not renewed its lease in the state store for this long (see `lease.rs`).
    pub leader_lease: Duration,
    /// This instance's name on the lease; `LLMOPT_INSTANCE_ID` or the host name when `None`.
    pub instance_id: Option<String>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            commit_every: 1000,
            poll_timeout: Duration::from_millis(200),
            limits: DecodeLimits::default(),
            stop_after_idle_polls: None,
            group: None,
            rebuild_state: false,
            partition_idle_after: Duration::from_secs(30),
            ready_max_backlog: 1000,
            checkpoint_interval: Duration::from_secs(5),
            checkpoints: false,
            stall_after: Duration::from_secs(60),
            leader_lease: Duration::from_secs(10),
            instance_id: None,
        }
    }
}

/// What a run did, for logs, summaries and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub consumed: u64,
    pub published: u64,
    pub dead_lettered: u64,
    pub duplicates: u64,
}

/// Drives one core over the transport.
pub struct Runner<P: Processor, E: Effects> {
    processor: P,
    effects: E,
    transport: Arc<dyn Transport>,
    topics: TopicNames,
    metrics: Arc<ServiceMetrics>,
    health: Arc<Health>,
    config: RunnerConfig,
    registry: SchemaRegistry,
    logical: HashMap<String, LogicalTopic>,
    summary: RunSummary,
    /// Where per-partition checkpoints go; `None`: no checkpoints.
    checkpoints: Option<Arc<dyn StateStore>>,
}

impl<P: Processor, E: Effects> Runner<P, E> {
    /// A runner for `processor` with the shell effects `effects`.
    pub fn new(
        processor: P,
        effects: E,
        transport: Arc<dyn Transport>,
        topics: TopicNames,
        metrics: Arc<ServiceMetrics>,
        health: Arc<Health>,
        config: RunnerConfig,
    ) -> Self {
        let logical = LogicalTopic::ALL
            .iter()
            .map(|t| (topics.name(*t), *t))
            .collect();
        Self {
            processor,
            effects,
            transport,
            topics,
            metrics,
            health,
            config,
            registry: SchemaRegistry::current(),
            logical,
            summary: RunSummary::default(),
            checkpoints: None,
        }
    }

    /// Checkpoints the core's per-partition state ([`Processor::checkpoint`]) in `store` every
    /// [`RunnerConfig::checkpoint_interval`], committing offsets only together with them, and
    /// restores a partition's checkpoint whenever this instance is assigned it. A restart then
    /// replays only what follows the last checkpoint, and a partition that moves to another
    /// instance takes its state along.
    pub fn with_checkpoints(mut self, store: Arc<dyn StateStore>) -> Self {
        self.checkpoints = Some(store);
        self
    }

    /// Consumes until `shutdown` (or the idle limit), then commits, leaves the group and returns
    /// the core (for checkpoints and summaries) and what was done.
    pub async fn run(self, shutdown: Shutdown) -> Result<(P, RunSummary), RuntimeError> {
        self.start().await?.run(shutdown).await
    }

    /// Creates missing topics and joins the consumer group; the returned [`Stage`] is then driven
    /// either continuously ([`Stage::run`]) or step by step ([`Stage::drain`]).
    pub async fn start(mut self) -> Result<Stage<P, E>, RuntimeError> {
        self.transport
            .ensure_topics(&self.topics.all_specs())
            .await?;
        let inputs: Vec<String> = self
            .processor
            .inputs()
            .into_iter()
            .map(|t| self.topics.name(t))
            .collect();
        let group = self
            .config
            .group
            .clone()
            .unwrap_or_else(|| self.topics.group(self.processor.name()));
        if self.config.rebuild_state {
            self.rebuild_state(&group, &inputs).await?;
        }
        let single =
            self.checkpoints.is_some() && self.processor.state_scope() == StateScope::Whole;
        if !single && self.processor.state_scope() == StateScope::Whole {
            // Without checkpoints there is no lease: this one instance consumes for its group,
            // and `llmopt_leader` says so (an alert on a group nobody leads reads it).
            self.metrics.leading.set(1);
        }
        let consumer: Box<dyn Consumer> = if single {
            // Joins the group once it leads (see `Stage::lead`).
            Box::new(NoGroup)
        } else {
            let consumer = self.transport.subscribe(&group, &inputs).await?;
            tracing::info!(service = self.processor.name(), ?inputs, "consuming");
            consumer
        };
        Ok(Stage {
            runner: self,
            consumer,
            group,
            inputs,
            last_record: Instant::now(),
            last_commit: Instant::now(),
            since_commit: 0,
            in_flight: VecDeque::new(),
            partitions: BTreeMap::new(),
            partitions_checked: Instant::now(),
            clock: None,
            unassigned_since: Some(Instant::now()),
            whole: None,
            held: VecDeque::new(),
            lease: LeaseState::new(single),
        })
    }
    /// Replays the inputs up to `group`'s committed offsets through the core, discarding its
    /// outputs, so a restarted stateful core resumes with the state it had.
    async fn rebuild_state(&mut self, group: &str, inputs: &[String]) -> Result<(), RuntimeError> {
        let mut remaining: HashMap<(String, i32), i64> = self
            .transport
            .committed_offsets(group, inputs)
            .await?
            .into_iter()
            .filter(|(_, offset)| *offset > 0)
            .map(|(tp, offset)| ((tp.topic, tp.partition), offset))
            .collect();
        if remaining.is_empty() {
            return Ok(());
        }
        let total: i64 = remaining.values().sum();
        tracing::info!(group, records = total, "rebuilding state from the inputs");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut replay = self
            .transport
            .subscribe(&format!("{group}-rebuild-{nanos}"), inputs)
            .await?;
        // The replay reads partitions in any interleaving: every one of them is behind until
        // its end, so event-time cores hold their watermark for each (outputs were published
        // before and are discarded).
        for (topic, partition) in remaining.keys() {
            if let Some(logical) = self.logical.get(topic).copied() {
                let _ = self
                    .processor
                    .on_partition(logical, *partition, PartitionState::Behind);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut replayed = 0u64;
        while !remaining.is_empty() {
            if Instant::now() > deadline {
                return Err(RuntimeError::Admin(format!(
                    "state rebuild of {group} did not finish in 10 minutes"
                )));
            }
            let Some(message) = replay.poll(self.config.poll_timeout).await? else {
                continue;
            };
            let tp = (message.topic.clone(), message.partition);
            let Some(end) = remaining.get(&tp).copied() else {
                continue;
            };
            if message.offset < end {
                // Records that were dead-lettered or rejected changed no state then either.
                let position = InboundMessage {
                    key: None,
                    headers: Vec::new(),
                    value: None,
                    ..message
                };
                let record = KafkaMessage {
                    key: message.key,
                    headers: message.headers,
                    value: message.value,
                };
                if let Ok((input, _)) = self.decode(&record, &position) {
                    if self.processor.validate(&input).is_ok() && self.processor.admit(&input) {
                        let _ = self.processor.process(&input);
                        replayed += 1;
                    }
                }
            }
            if message.offset + 1 >= end {
                remaining.remove(&tp);
                if let Some(logical) = self.logical.get(&tp.0).copied() {
                    let _ = self
                        .processor
                        .on_partition(logical, tp.1, PartitionState::CaughtUp);
                }
            }
        }
        replay.close().await?;
        tracing::info!(group, replayed, "state rebuilt");
        Ok(())
    }

    async fn report_lag(metrics: Arc<ServiceMetrics>, consumer: &mut dyn Consumer) {
        match consumer.lag().await {
            Ok(lags) => {
                for (tp, lag) in lags {
                    let partition = tp.partition.to_string();
                    metrics
                        .consumer_lag
                        .with_label_values(&[tp.topic.as_str(), partition.as_str()])
                        .set(lag);
                }
            }
            Err(e) => tracing::debug!(error = %e, "consumer lag unavailable"),
        }
    }

    /// Decodes and processes one input and enqueues its outputs (or its dead letter). The
    /// input may be acked once the returned deliveries complete.
    ///
    /// Each input gets a span (target [`trace::TARGET`]) whose parent is the record's
    /// `traceparent`; it stays open until the input is acked, and its own `traceparent` is what
    /// the outputs carry.
    async fn handle(
        &mut self,
        message: InboundMessage,
        consumer: &mut dyn Consumer,
        held: &mut VecDeque<InboundMessage>,
    ) -> Result<InFlight, RuntimeError> {
        let started = Instant::now();
        self.metrics
            .events_in
            .with_label_values(&[message.topic.as_str()])
            .inc();
        self.summary.consumed += 1;
        // The record's bytes move into the binding's form for decoding and back (the dead
        // letter and the ack need them), instead of being copied per record.
        let mut message = message;
        let record = KafkaMessage {
            key: message.key.take(),
            headers: std::mem::take(&mut message.headers),
            value: message.value.take(),
        };
        let decoded = self.decode(&record, &message);
        message.key = record.key;
        message.headers = record.headers;
        message.value = record.value;
        let span = tracing::info_span!(
            target: "llmopt::trace",
            "process",
            otel.name = %format_args!("{} process", message.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %message.topic,
            messaging.destination.partition.id = message.partition,
            messaging.kafka.offset = message.offset,
            messaging.consumer.group.name = %self.processor.name(),
        );
        if let Ok((_, Some(incoming))) = &decoded {
            trace::set_parent(&span, incoming);
        }
        let mut outputs = Vec::new();
        let mut admitted = None;
        let delivery = match decoded {
            Err(e) => Some(self.dead_letter(&message, e.kind(), &e.to_string(), &span)?),
            Ok((input, incoming)) => {
                if let Err(rejection) = self.processor.validate(&input) {
                    Some(self.dead_letter(&message, rejection.kind, &rejection.message, &span)?)
                } else if !self.processor.admit(&input) || !self.admit(&input, &span).await? {
                    self.summary.duplicates += 1;
                    self.metrics
                        .duplicates
                        .with_label_values(&[message.topic.as_str()])
                        .inc();
                    None
                } else {
                    outputs = match self.processor.job(&input) {
                        Some(job) => run_job(job, &input.id, consumer, held).await?,
                        None => self.processor.process(&input),
                    };
                    let traceparent = trace::traceparent(&span).or(incoming);
                    let delivery = self.enqueue(&outputs, traceparent.as_deref(), &span)?;
                    admitted = Some(input);
                    delivery
                }
            }
        };
        Ok(InFlight {
            message: Some(message),
            admitted,
            outputs,
            delivery,
            started,
            span,
        })
    }

    /// Asks the shell's effects whether to process `input`, waiting out state-store outages.
    async fn admit(&mut self, input: &Input, span: &tracing::Span) -> Result<bool, RuntimeError> {
        let mut outage = Outage::new(&self.health, "state store");
        loop {
            let attempt = self
                .effects
                .admit(input)
                .instrument(
                    tracing::info_span!(target: "llmopt::trace", parent: span, "state admit"),
                )
                .await;
            match attempt {
                Err(e) if e.is_transient() => outage.wait(&e).await,
                result => return result,
            }
        }
    }

    fn decode(
        &self,
        record: &KafkaMessage,
        message: &InboundMessage,
    ) -> Result<(Input, Option<String>), WireError> {
        let (ce, _) = llmopt_cloudevents::decode(record, &self.config.limits)?;
        let event = AnyEvent::from_cloudevent(&ce, &self.registry)?;
        let time_ms = ce
            .time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        let topic = self
            .logical
            .get(&message.topic)
            .copied()
            .unwrap_or(LogicalTopic::TelemetryRaw);
        let traceparent = ce.traceparent().map(str::to_string);
        Ok((
            Input {
                topic,
                partition: message.partition,
                offset: message.offset,
                id: ce.id,
                source: ce.source,
                time_ms,
                event,
            },
            traceparent,
        ))
    }

    /// Hands the outputs to the producer in order; returns the future of all their
    /// acknowledgements (`None` when there are no outputs).
    fn enqueue(
        &mut self,
        outputs: &[Output],
        traceparent: Option<&str>,
        parent: &tracing::Span,
    ) -> Result<Option<PendingDelivery>, RuntimeError> {
        if outputs.is_empty() {
            return Ok(None);
        }
        let _publish = tracing::info_span!(
            target: "llmopt::trace",
            parent: parent,
            "publish",
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "publish",
            messaging.batch.message_count = outputs.len(),
        )
        .entered();
        let source = format!("llmopt/{}", self.processor.name());
        let mut deliveries = Vec::with_capacity(outputs.len());
        for output in outputs {
            let meta = EventMeta {
                id: output.id.clone(),
                source: source.clone(),
                time_ms: Some(output.time_ms),
                partition_key: Some(output.key.clone()),
                traceparent: traceparent.map(str::to_string),
                subject: None,
            };
            // Operators read the alert topic with any consumer: JSON there, Avro elsewhere.
            let format = if output.topic == LogicalTopic::Alerts {
                DataFormat::Json
            } else {
                DataFormat::Avro
            };
            let ce =
                output
                    .event
                    .to_cloudevent(&meta, format)
                    .map_err(|e| RuntimeError::Encode {
                        id: output.id.clone(),
                        reason: e.to_string(),
                    })?;
            let record = llmopt_cloudevents::to_binary(&ce);
            let topic = self.topics.name(output.topic);
            let message = OutboundMessage {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms: Some(output.time_ms),
            };
            deliveries.push(self.transport.enqueue(&topic, message)?);
            self.metrics
                .events_out
                .with_label_values(&[topic.as_str()])
                .inc();
        }
        self.summary.published += deliveries.len() as u64;
        Ok(Some(Box::pin(async move {
            let delivered = futures::future::try_join_all(deliveries).await?;
            Ok(delivered.into_iter().last().unwrap_or(Delivered {
                partition: 0,
                offset: 0,
            }))
        })))
    }

    fn dead_letter(
        &mut self,
        message: &InboundMessage,
        kind: &str,
        reason: &str,
        span: &tracing::Span,
    ) -> Result<PendingDelivery, RuntimeError> {
        tracing::warn!(topic = %message.topic, partition = message.partition,
            offset = message.offset, kind, reason, "dead-lettering record");
        let record = dead_letter_for(self.processor.name(), message, kind, reason);
        let output = Output {
            topic: LogicalTopic::DeadLetter,
            id: record.id.clone(),
            key: message.topic.clone(),
            time_ms: message.timestamp_ms.unwrap_or_default(),
            event: AnyEvent::DeadLetter(record),
        };
        let delivery = self.enqueue(std::slice::from_ref(&output), None, span)?;
        self.summary.dead_lettered += 1;
        self.metrics.dead_letters.with_label_values(&[kind]).inc();
        Ok(delivery.unwrap_or_else(|| {
            Box::pin(std::future::ready(Ok(Delivered {
                partition: 0,
                offset: 0,
            })))
        }))
    }
}

/// Runs a core's long job on a blocking thread while the consumer keeps polling with its
/// partitions paused, so the member stays in its group (librdkafka evicts a member that
/// does not poll for `max.poll.interval.ms`). Records that still arrive (a partition
/// assigned meanwhile starts unpaused) are held and handled after the job, in order.
async fn run_job(
    job: crate::Job,
    input: &str,
    consumer: &mut dyn Consumer,
    held: &mut VecDeque<InboundMessage>,
) -> Result<Vec<Output>, RuntimeError> {
    consumer.pause()?;
    let started = Instant::now();
    tracing::info!(
        input,
        "job started off the consumer thread; partitions paused"
    );
    let task = tokio::task::spawn_blocking(job);
    while !task.is_finished() {
        match consumer.poll(JOB_POLL).await {
            Ok(Some(message)) => {
                held.push_back(message);
                consumer.pause()?;
            }
            Ok(None) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "broker unavailable while a job runs");
                tokio::time::sleep(JOB_POLL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let outputs = task.await.map_err(|e| RuntimeError::Job {
        input: input.to_string(),
        reason: e.to_string(),
    })?;
    consumer.resume()?;
    tracing::info!(
        input,
        elapsed_ms = started.elapsed().as_millis() as u64,
        outputs = outputs.len(),
        "job finished; partitions resumed"
    );
    Ok(outputs)
}

/// An input whose outputs are on their way: acked once they are acknowledged. Outputs of a
/// partition signal have no input (`message` is `None`) but keep their place in the queue, so
/// no later offset is committed before they are acknowledged.
struct InFlight {
    message: Option<InboundMessage>,
    /// The input, when the effects admitted it (handed to [`Effects::after_publish`]).
    admitted: Option<Input>,
    outputs: Vec<Output>,
    delivery: Option<PendingDelivery>,
    started: Instant,
    /// The input's span, closed when the input is acked.
    span: tracing::Span,
}

/// Most inputs in flight before the runner waits for the oldest acknowledgement.
const MAX_IN_FLIGHT: usize = 10_000;

/// Most records read ahead behind a polled one (see [`Stage::read_ahead`]).
const READ_AHEAD: usize = 512;

/// A runner that has joined its consumer group.
pub struct Stage<P: Processor, E: Effects> {
    runner: Runner<P, E>,
    consumer: Box<dyn Consumer>,
    group: String,
    /// The subscribed topics (to join the group again after a stall).
    inputs: Vec<String>,
    /// When the last record was handled, or partitions were last assigned.
    last_record: Instant,
    last_commit: Instant,
    since_commit: usize,
    in_flight: VecDeque<InFlight>,
    /// Owned input partitions and what the core was last told about each.
    partitions: BTreeMap<TopicPartition, PartitionTrack>,
    partitions_checked: Instant,
    /// Processing-time partition rules; set by [`Stage::run`], none for drains.
    clock: Option<PartitionClock>,
    /// Since when this member owns no partition (logged while it lasts).
    unassigned_since: Option<Instant>,
    /// The group's whole-core checkpoint, once claimed ([`StateScope::Whole`] cores).
    whole: Option<WholeHold>,
    /// Records that arrived while a job ran, handled before polling again.
    held: VecDeque<InboundMessage>,
    /// Leadership among the replicas of a single-instance core.
    lease: LeaseState,
}

/// Whether a stage must lead its replicas before consuming, and its lease once it does.
enum LeaseState {
    /// Any number of instances share the group: no lease.
    NotNeeded,
    /// A [`StateScope::Whole`] core not leading yet: outside the consumer group.
    Standby,
    Leading(Lease),
}

impl LeaseState {
    fn new(single: bool) -> Self {
        if single {
            LeaseState::Standby
        } else {
            LeaseState::NotNeeded
        }
    }
}

/// The consumer of a stage between leaving its group and joining again: owns nothing.
struct NoGroup;

#[async_trait::async_trait]
impl Consumer for NoGroup {
    async fn poll(&mut self, _: Duration) -> Result<Option<InboundMessage>, TransportError> {
        Ok(None)
    }
    fn ack(&mut self, _: &InboundMessage) -> Result<(), TransportError> {
        Ok(())
    }
    async fn commit(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn assignment(&self) -> Result<Vec<TopicPartition>, TransportError> {
        Ok(Vec::new())
    }
    async fn lag(&mut self) -> Result<Vec<(TopicPartition, i64)>, TransportError> {
        Ok(Vec::new())
    }
    async fn progress(&mut self) -> Result<Vec<PartitionProgress>, TransportError> {
        Ok(Vec::new())
    }
    fn pause(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        Ok(())
    }
}

/// This instance's hold on its group's whole-core checkpoint.
#[derive(Debug)]
struct WholeHold {
    claim: Claim,
    /// Per input partition, the next offset the core's state does not cover: restored from
    /// the checkpoint, then advanced as records are processed and partitions let go.
    offsets: BTreeMap<(String, i32), i64>,
}

/// The runner's view of one owned input partition.
#[derive(Debug)]
struct PartitionTrack {
    /// What the core was last told (`None`: nothing yet).
    reported: Option<PartitionState>,
    /// Offset of the next record to read, as far as known.
    next: Option<i64>,
    /// The partition's end, as far as known (the highest end reported).
    end: Option<i64>,
    last_delivery: Instant,
    /// This instance's claim on the partition's checkpoint (with checkpoints).
    claim: Option<Claim>,
    /// Records below this offset are in the restored checkpoint: acked without processing.
    skip_below: Option<i64>,
    /// One past the last record the core processed (what a checkpoint covers).
    processed_next: Option<i64>,
    /// Processed records since the last checkpoint.
    dirty: bool,
    /// Whether a fetch came back empty after the last record (`None`: the transport's ends
    /// are exact).
    at_end: Option<bool>,
    /// Whether the consumer is re-delivering records the core already processed (logged once
    /// a rewind).
    rewound: bool,
}

impl PartitionTrack {
    fn new() -> Self {
        Self {
            reported: None,
            next: None,
            end: None,
            last_delivery: Instant::now(),
            claim: None,
            skip_below: None,
            processed_next: None,
            dirty: false,
            at_end: None,
            rewound: false,
        }
    }

    /// Records not read yet; unknown ends count as a backlog (so a just-assigned partition
    /// holds the watermark until its end is known).
    /// A partition whose fetch has not come back empty since its last record counts at least
    /// one record behind, whatever end the broker reported.
    fn backlog(&self) -> Option<i64> {
        let known = match (self.next, self.end) {
            (Some(next), Some(end)) => Some((end - next).max(0)),
            (None, Some(0)) => Some(0),
            _ => None,
        };
        match self.at_end {
            Some(false) => known.map(|b| b.max(1)),
            _ => known,
        }
    }

    /// The state to report now: behind while records are known to wait (on Kafka, until a
    /// fetch came back empty after the last record: a broker's reported end can lag its log;
    /// tansu reports the last batch's base offset + 1), idle once caught up and quiet for
    /// `clock.idle` (processing time counts only in a running loop).
    fn judge(&self, clock: Option<&PartitionClock>) -> PartitionState {
        let quiet = self.last_delivery.elapsed();
        match (self.backlog(), clock) {
            (Some(0), Some(clock)) if quiet >= clock.idle => PartitionState::Idle,
            (Some(0), _) => PartitionState::CaughtUp,
            _ => PartitionState::Behind,
        }
    }
}

/// The processing-time rules of a running loop (in-process drains have none).
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Quiet time before a caught-up partition counts as idle.
    idle: Duration,
}

impl<P: Processor, E: Effects> Stage<P, E> {
    /// The core, e.g. to read its state between steps.
    pub fn processor(&self) -> &P {
        &self.runner.processor
    }

    /// What has been done so far.
    pub fn summary(&self) -> &RunSummary {
        &self.runner.summary
    }

    /// Processes everything available until a poll of `idle` finds nothing, then commits.
    /// In-process runs call this stage after stage, which makes them deterministic.
    ///
    /// Partition states reach the core at points fixed by the records (a partition is behind
    /// until its last record known at the drain's start is read), and never as idle: a drain
    /// has no processing time, which keeps in-process runs reproducible.
    pub async fn drain(&mut self, idle: Duration) -> Result<u64, RuntimeError> {
        if matches!(self.lease, LeaseState::Standby) {
            let (_never, mut signal) = crate::shutdown::channel();
            self.lead(&mut signal).await?;
        }
        let mut processed = 0;
        self.check_partitions().await?;
        loop {
            let revoking = self.consumer.revoking();
            if !revoking.is_empty() {
                self.hand_over(revoking).await?;
            }
            let polled = match self.held.pop_front() {
                Some(message) => Some(message),
                None => match self.consumer.poll(idle).await? {
                    Some(message) => Some(self.read_ahead(message).await),
                    None => None,
                },
            };
            match polled {
                Some(message) => {
                    self.handle_and_maybe_commit(message).await?;
                    processed += 1;
                }
                None if self.consumer.assignment()?.is_empty() => continue,
                None => {
                    self.check_partitions().await?;
                    break;
                }
            }
        }
        self.complete(true).await?;
        self.commit().await?;
        self.runner.health.set_ready(true);
        Ok(processed)
    }

    /// Consumes until `shutdown` (or the idle limit), then commits, leaves the group and returns
    /// the core and what was done.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(P, RunSummary), RuntimeError> {
        let mut idle_polls = 0;
        let mut lag_reported = Instant::now();
        self.clock = Some(PartitionClock {
            idle: self.runner.config.partition_idle_after,
        });
        if matches!(self.lease, LeaseState::Standby) && !self.lead(&mut shutdown).await? {
            return self.stop().await;
        }
        let health = self.runner.health.clone();
        let mut broker_outage: Option<Outage<'_>> = None;
        loop {
            if let (LeaseState::Leading(lease), Some(store)) =
                (&mut self.lease, self.runner.checkpoints.as_ref())
            {
                lease.renew(store.as_ref()).await?;
            }
            if lag_reported.elapsed() >= LAG_INTERVAL {
                lag_reported = Instant::now();
                let metrics = self.runner.metrics.clone();
                Runner::<P, E>::report_lag(metrics, self.consumer.as_mut()).await;
            }
            let revoking = self.consumer.revoking();
            if !revoking.is_empty() {
                self.hand_over(revoking).await?;
            }
            if self.partitions_checked.elapsed() >= PARTITION_CHECK_INTERVAL {
                self.check_partitions().await?;
            }
            let commit_interval = match self.runner.checkpoints {
                Some(_) => self.runner.config.checkpoint_interval,
                None => COMMIT_INTERVAL,
            };
            if self.last_commit.elapsed() >= commit_interval {
                self.commit().await?;
            }
            let polled = match self.held.pop_front() {
                Some(message) => Ok(Some(message)),
                None => match tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    polled = self.consumer.poll(self.runner.config.poll_timeout) => polled,
                } {
                    Ok(Some(message)) => Ok(Some(self.read_ahead(message).await)),
                    other => other,
                },
            };
            let polled = match polled {
                Ok(polled) => {
                    broker_outage = None;
                    polled
                }
                Err(e) if e.is_transient() => {
                    let e = RuntimeError::from(e);
                    broker_outage
                        .get_or_insert_with(|| Outage::new(&health, "broker"))
                        .wait(&e)
                        .await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(message) = polled else {
                self.check_partitions().await?;
                if self.partitions.is_empty() {
                    // Still joining the group (or given no partition): not caught up yet.
                    continue;
                }
                if let Some(waiting) = self.stalled() {
                    self.rejoin(waiting).await?;
                    idle_polls = 0;
                    continue;
                }
                // Nothing to read right now. Wait for what is in flight and commit, so the
                // group's offsets show it (lag dashboards and step barriers read them).
                self.complete(true).await?;
                self.commit().await?;
                let backlog = self.backlog();
                self.runner
                    .health
                    .set_ready(backlog.is_some_and(|b| b <= self.runner.config.ready_max_backlog));
                self.runner.health.set_idle(backlog == Some(0));
                idle_polls += 1;
                if self
                    .runner
                    .config
                    .stop_after_idle_polls
                    .is_some_and(|max| idle_polls >= max)
                {
                    break;
                }
                continue;
            };
            idle_polls = 0;
            self.handle_and_maybe_commit(message).await?;
            // After handling: a long job (partitions paused meanwhile) is no stall.
            self.last_record = Instant::now();
        }
        self.stop().await
    }

    /// Commits, leaves the group and returns the core and what was done.
    pub async fn stop(mut self) -> Result<(P, RunSummary), RuntimeError> {
        self.runner.health.set_ready(false);
        self.complete(true).await?;
        self.commit().await?;
        self.consumer.close().await?;
        if let (LeaseState::Leading(lease), Some(store)) = (
            std::mem::replace(&mut self.lease, LeaseState::NotNeeded),
            self.runner.checkpoints.as_ref(),
        ) {
            lease.release(store.as_ref()).await;
            self.runner.metrics.leading.set(0);
        }
        let runner = self.runner;
        tracing::info!(service = runner.processor.name(), summary = ?runner.summary, "stopped");
        Ok((runner.processor, runner.summary))
    }

    /// Reads the records already waiting behind `first` into `held` (up to [`READ_AHEAD`],
    /// without waiting) and lets the effects prefetch for the batch, so that an effect asking a
    /// remote store about each input (ingest's deduplication) makes one round trip per batch.
    /// Returns `first`, to be handled now; the rest are handled next, in order.
    async fn read_ahead(&mut self, first: InboundMessage) -> InboundMessage {
        if !self.held.is_empty() {
            return first;
        }
        self.held.push_back(first);
        while self.held.len() < READ_AHEAD {
            match self.consumer.poll(Duration::ZERO).await {
                Ok(Some(message)) => self.held.push_back(message),
                // An error is the next regular poll's to handle; nothing was taken.
                Ok(None) | Err(_) => break,
            }
        }
        // A state-store outage is waited out here as admission would wait it out (not ready
        // meanwhile); any other failure only costs the batching.
        let mut outage = Outage::new(&self.runner.health, "state store");
        loop {
            match self
                .runner
                .effects
                .prefetch(self.held.make_contiguous())
                .await
            {
                Err(e) if e.is_transient() => outage.wait(&e).await,
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch failed: admitting record by record");
                    break;
                }
                Ok(()) => break,
            }
        }
        match self.held.pop_front() {
            Some(first) => first,
            None => unreachable!("read_ahead holds the record it was given"),
        }
    }

    /// Makes the effects' buffered records durable, waiting out state-store outages.
    async fn flush_effects(&mut self) -> Result<(), RuntimeError> {
        let mut outage = Outage::new(&self.runner.health, "effects (state store or sink)");
        loop {
            match self.runner.effects.flush().await {
                Err(e) if e.is_transient() => outage.wait(&e).await,
                result => return result,
            }
        }
    }

    async fn handle_and_maybe_commit(
        &mut self,
        message: InboundMessage,
    ) -> Result<(), RuntimeError> {
        self.runner.health.set_idle(false);
        let tp = TopicPartition {
            topic: message.topic.clone(),
            partition: message.partition,
        };
        if !self.partitions.contains_key(&tp) {
            // A new assignment: the core learns which partitions are behind before it sees
            // a record of any of them.
            self.check_partitions().await?;
        }
        let offset = message.offset;
        let metrics = &self.runner.metrics;
        let covered = self.partitions.get_mut(&tp).is_some_and(|track| {
            let in_checkpoint = track.skip_below.is_some_and(|skip| offset < skip);
            let rewound = track.processed_next.is_some_and(|next| offset < next);
            if rewound && !in_checkpoint && !track.rewound {
                // A rebalance took the partition away and gave it back between two looks at
                // the assignment: the consumer starts again at the committed offset, and the
                // core has already processed what follows it.
                tracing::info!(topic = %tp.topic, partition = tp.partition, offset,
                    processed_next = ?track.processed_next,
                    "partition rewound by a rebalance: records already processed are acked, not processed again");
                metrics.rewinds.inc();
            }
            track.rewound = rewound && !in_checkpoint;
            in_checkpoint || rewound
        });
        if covered {
            // Already in the restored checkpoint or in the core's state (their outputs were
            // published before, or are in flight): ack it without processing.
            self.in_flight.push_back(InFlight {
                message: Some(message),
                admitted: None,
                outputs: Vec::new(),
                delivery: None,
                started: Instant::now(),
                span: tracing::Span::none(),
            });
            if let Some(track) = self.partitions.get_mut(&tp) {
                track.next = track.next.max(Some(offset + 1));
            }
            return self.complete(false).await;
        }
        let in_flight = self
            .runner
            .handle(message, self.consumer.as_mut(), &mut self.held)
            .await?;
        self.in_flight.push_back(in_flight);
        if let Some(track) = self.partitions.get_mut(&tp) {
            track.processed_next = Some(offset + 1);
            track.dirty = true;
        }
        if self.delivered(tp, offset)? {
            self.check_partitions().await?;
        }
        let block = self.in_flight.len() > MAX_IN_FLIGHT;
        self.complete(block).await
    }

    /// Records not read yet on the owned partitions (`None`: unknown, or nothing owned).
    fn backlog(&self) -> Option<i64> {
        if self.partitions.is_empty() {
            return None;
        }
        self.partitions.values().map(PartitionTrack::backlog).sum()
    }

    /// Re-reads the assignment and each owned partition's progress and tells the core about
    /// every partition whose state changed.
    async fn check_partitions(&mut self) -> Result<(), RuntimeError> {
        self.partitions_checked = Instant::now();
        let assigned: BTreeSet<TopicPartition> = self.consumer.assignment()?.into_iter().collect();
        let revoked: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|tp| !assigned.contains(*tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            // Records read ahead from a partition lost without a hand-over are its next
            // owner's to read (they were not acked): processing them here would rebuild state
            // for a partition this instance no longer owns.
            self.held.retain(|m| {
                !revoked
                    .iter()
                    .any(|tp| tp.partition == m.partition && tp.topic == m.topic)
            });
        }
        for tp in revoked {
            if let Some(track) = self.partitions.remove(&tp) {
                self.let_go_whole(&tp, &track);
                self.warn_single_instance(&tp);
            }
            self.signal(&tp, PartitionState::Revoked)?;
        }
        self.note_assignment(assigned.len());
        if assigned.is_empty() {
            return Ok(());
        }
        let mut new = Vec::new();
        for tp in assigned {
            if !self.partitions.contains_key(&tp) {
                self.partitions.insert(tp.clone(), PartitionTrack::new());
                new.push(tp);
            }
        }
        if !new.is_empty() {
            // A stall is counted from the assignment, not from before the group join.
            self.last_record = Instant::now();
        }
        for tp in new {
            self.claim_partition(&tp).await?;
        }
        let progress = match self.consumer.progress().await {
            Ok(progress) => progress,
            Err(e) => {
                // Unknown progress keeps partitions as they were; asked again next check.
                tracing::warn!(error = %e, "partition progress unavailable");
                Vec::new()
            }
        };
        // Records read ahead (or held during a job) are not handled yet: the partition's
        // position, as the core must see it, is the first of them.
        let mut first_held: HashMap<&TopicPartition, i64> = HashMap::new();
        for message in &self.held {
            let tp = TopicPartition {
                topic: message.topic.clone(),
                partition: message.partition,
            };
            if let Some((tp, _)) = self.partitions.get_key_value(&tp) {
                first_held.entry(tp).or_insert(message.offset);
            }
        }
        let first_held: HashMap<TopicPartition, i64> = first_held
            .into_iter()
            .map(|(tp, offset)| (tp.clone(), offset))
            .collect();
        for progress in progress {
            let held = first_held.get(&progress.partition).copied();
            if let Some(track) = self.partitions.get_mut(&progress.partition) {
                track.next = track.next.max(held.or(progress.position));
                track.end = track.end.max(progress.end);
                track.at_end = match held {
                    Some(_) => progress.at_end.map(|_| false),
                    None => progress.at_end,
                };
            }
        }
        let changes: Vec<(TopicPartition, PartitionState)> = self
            .partitions
            .iter()
            .filter_map(|(tp, track)| {
                let state = track.judge(self.clock.as_ref());
                (track.reported != Some(state)).then(|| (tp.clone(), state))
            })
            .collect();
        for (tp, state) in changes {
            if let Some(track) = self.partitions.get_mut(&tp) {
                track.reported = Some(state);
            }
            self.signal(&tp, state)?;
        }
        Ok(())
    }

    /// Waits as a standby until this instance holds the lease of its group, then joins the
    /// group. `false` if `shutdown` came first.
    async fn lead(&mut self, shutdown: &mut Shutdown) -> Result<bool, RuntimeError> {
        let Some(store) = self.runner.checkpoints.clone() else {
            self.lease = LeaseState::NotNeeded;
            return Ok(true);
        };
        let holder = self
            .runner
            .config
            .instance_id
            .clone()
            .unwrap_or_else(lease::instance_id);
        let acquired = lease::acquire(
            store.as_ref(),
            lease::key(&self.group),
            holder,
            self.runner.config.leader_lease,
            &self.runner.health,
            shutdown,
        )
        .await?;
        let Some(acquired) = acquired else {
            return Ok(false);
        };
        self.lease = LeaseState::Leading(acquired);
        self.runner.metrics.leading.set(1);
        self.consumer = self
            .runner
            .transport
            .subscribe(&self.group, &self.inputs)
            .await?;
        tracing::info!(service = self.runner.processor.name(), inputs = ?self.inputs, "consuming");
        self.last_record = Instant::now();
        self.unassigned_since = Some(Instant::now());
        Ok(true)
    }

    /// Lets go of partitions the group is revoking (Kafka's eager protocol revokes the whole
    /// assignment at every rebalance) only after everything read from them is processed,
    /// acknowledged, checkpointed and committed: the next owner, or this instance again,
    /// restores the checkpoint and starts exactly where this one stopped, re-reading nothing
    /// (Kafka Streams' and Flink's behaviour; without it the new owner would re-process
    /// everything since the last periodic checkpoint). A failed commit is not fatal: the
    /// checkpoints hold the offsets, and a service without them re-reads records whose outputs
    /// carry the same ids.
    async fn hand_over(&mut self, revoked: Vec<TopicPartition>) -> Result<(), RuntimeError> {
        while let Some(message) = self.held.pop_front() {
            self.handle_and_maybe_commit(message).await?;
        }
        self.complete(true).await?;
        self.save_checkpoints().await?;
        if let Err(e) = self.commit_offsets().await {
            tracing::warn!(error = %e,
                "commit on revocation failed: the next owner starts from the checkpoints (or re-reads since the last commit)");
        }
        self.last_commit = Instant::now();
        let mut handed = 0;
        for tp in revoked {
            if let Some(track) = self.partitions.remove(&tp) {
                self.let_go_whole(&tp, &track);
                handed += 1;
            }
            self.signal(&tp, PartitionState::Revoked)?;
        }
        self.complete(true).await?;
        self.consumer.release()?;
        self.runner.metrics.handovers.inc_by(handed);
        tracing::info!(
            service = self.runner.processor.name(),
            partitions = handed,
            "partitions handed over: processed, checkpointed and committed before letting go"
        );
        Ok(())
    }

    /// Logs (and keeps `/ready` false) while this member owns no partition: on some brokers a
    /// group whose members all stopped at once was seen never to reassign its partitions.
    fn note_assignment(&mut self, owned: usize) {
        match (owned, self.unassigned_since) {
            (0, None) => {
                self.unassigned_since = Some(Instant::now());
                self.runner.health.set_ready(false);
                tracing::info!(
                    service = self.runner.processor.name(),
                    "waiting for partitions"
                );
            }
            (0, Some(since)) if since.elapsed() >= Duration::from_secs(30) => {
                self.unassigned_since = Some(Instant::now());
                self.runner.health.set_ready(false);
                tracing::warn!(
                    service = self.runner.processor.name(),
                    "still waiting for a partition assignment"
                );
            }
            (0, Some(_)) => {}
            (_, Some(since)) => {
                self.unassigned_since = None;
                tracing::info!(
                    service = self.runner.processor.name(),
                    partitions = owned,
                    waited_ms = since.elapsed().as_millis() as u64,
                    "partitions assigned"
                );
            }
            (_, None) => {}
        }
    }

    /// Notes a record read from `tp` at `offset` (after the core handled it): a partition read
    /// up to its known end is caught up, which the core hears at once. Returns whether the end
    /// must be looked at again first: on a transport with exact ends (the embedded log, no
    /// end-of-partition signal), the end known from the last look is stale once a record at or
    /// past it arrives, and a partition judged caught up while records wait behind it would
    /// stop holding the watermark (a partition with more keys than another then falls minutes
    /// behind it in event time while both read a burst, and its windows close early).
    fn delivered(&mut self, tp: TopicPartition, offset: i64) -> Result<bool, RuntimeError> {
        let Some(track) = self.partitions.get_mut(&tp) else {
            return Ok(false);
        };
        let past_known_end = track.at_end.is_none() && track.end.is_some_and(|end| offset >= end);
        track.next = track.next.max(Some(offset + 1));
        track.last_delivery = Instant::now();
        if track.at_end.is_some() {
            track.at_end = Some(false);
        }
        if past_known_end {
            return Ok(true);
        }
        let state = track.judge(self.clock.as_ref());
        if track.reported == Some(state) {
            return Ok(false);
        }
        if track.reported == Some(PartitionState::Behind) && track.at_end.is_none() {
            return Ok(true);
        }
        track.reported = Some(state);
        self.signal(&tp, state)?;
        Ok(false)
    }

    /// Tells the core about a partition's state and publishes what it answers.
    fn signal(&mut self, tp: &TopicPartition, state: PartitionState) -> Result<(), RuntimeError> {
        let Some(topic) = self.runner.logical.get(&tp.topic).copied() else {
            return Ok(());
        };
        tracing::debug!(topic = %tp.topic, partition = tp.partition, ?state, "partition state");
        let outputs = self
            .runner
            .processor
            .on_partition(topic, tp.partition, state);
        if outputs.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!(
            target: "llmopt::trace",
            "partition state",
            messaging.destination.name = %tp.topic,
            messaging.destination.partition.id = tp.partition,
            state = ?state,
        );
        let delivery = self.runner.enqueue(&outputs, None, &span)?;
        self.in_flight.push_back(InFlight {
            message: None,
            admitted: None,
            outputs,
            delivery,
            started: Instant::now(),
            span,
        });
        Ok(())
    }

    /// Acks inputs whose outputs are acknowledged, oldest first (so offsets are committed in
    /// order). With `wait_all` it waits for every input in flight; otherwise it takes only
    /// those already done, and at least the oldest when too many are in flight.
    async fn complete(&mut self, wait_all: bool) -> Result<(), RuntimeError> {
        let mut must_wait = wait_all || self.in_flight.len() > MAX_IN_FLIGHT;
        while let Some(head) = self.in_flight.front_mut() {
            if let Some(delivery) = head.delivery.as_mut() {
                if must_wait {
                    delivery.as_mut().await?;
                } else {
                    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
                    match delivery.as_mut().poll(&mut cx) {
                        std::task::Poll::Pending => break,
                        std::task::Poll::Ready(result) => {
                            result?;
                        }
                    }
                }
            }
            let Some(done) = self.in_flight.pop_front() else {
                break;
            };
            // Effects first, then the ack: a crash in between redelivers an input whose
            // effects are recorded, never one whose outputs are unpublished.
            let mut outage = Outage::new(&self.runner.health, "effects (state store or sink)");
            loop {
                let attempt = self
                    .runner
                    .effects
                    .after_publish(done.admitted.as_ref(), &done.outputs)
                    .instrument(tracing::info_span!(
                        target: "llmopt::trace",
                        parent: &done.span,
                        "state after_publish"
                    ))
                    .await;
                match attempt {
                    Err(e) if e.is_transient() => outage.wait(&e).await,
                    result => break result?,
                }
            }
            if let Some(message) = &done.message {
                self.consumer.ack(message)?;
            }
            let Some(message) = &done.message else {
                must_wait = wait_all || self.in_flight.len() > MAX_IN_FLIGHT;
                continue;
            };
            self.runner.health.count_handled();
            self.runner
                .metrics
                .processing_seconds
                .with_label_values(&[message.topic.as_str()])
                .observe(done.started.elapsed().as_secs_f64());
            self.since_commit += 1;
            if self.runner.checkpoints.is_none()
                && self.since_commit >= self.runner.config.commit_every
            {
                self.commit_offsets().await?;
            }
            must_wait = wait_all || self.in_flight.len() > MAX_IN_FLIGHT;
        }
        Ok(())
    }

    /// Commits acked offsets; with checkpoints, first waits for everything in flight and
    /// checkpoints the partitions that changed, so committed offsets never run ahead of them.
    async fn commit(&mut self) -> Result<(), RuntimeError> {
        if self.runner.checkpoints.is_some() {
            self.complete(true).await?;
            self.save_checkpoints().await?;
        }
        self.commit_offsets().await?;
        self.last_commit = Instant::now();
        Ok(())
    }

    async fn commit_offsets(&mut self) -> Result<(), RuntimeError> {
        if self.since_commit > 0 {
            self.flush_effects().await?;
            self.consumer.commit().await?;
            self.since_commit = 0;
        }
        Ok(())
    }

    /// Claims a newly assigned partition's checkpoint and restores it into the core.
    async fn claim_partition(&mut self, tp: &TopicPartition) -> Result<(), RuntimeError> {
        let Some(store) = self.runner.checkpoints.clone() else {
            return Ok(());
        };
        if self.runner.processor.state_scope() == StateScope::Whole {
            return self.adopt_partition(store, tp).await;
        }
        let Some(topic) = self.runner.logical.get(&tp.topic).copied() else {
            return Ok(());
        };
        let key = checkpoint::key(&self.group, &tp.topic, tp.partition);
        let mut outage = Outage::new(&self.runner.health, "state store");
        let (claim, restore) = loop {
            match checkpoint::claim(store.as_ref(), key.clone()).await {
                Err(e) if e.is_transient() => outage.wait(&e).await,
                result => break result?,
            }
        };
        let Some(track) = self.partitions.get_mut(tp) else {
            return Ok(());
        };
        if let Some(restored) = restore {
            self.runner
                .processor
                .restore(topic, tp.partition, &restored.state)
                .map_err(|reason| RuntimeError::Restore {
                    key: key.clone(),
                    reason,
                })?;
            track.skip_below = restored.next_offset;
            track.next = track.next.max(restored.next_offset);
            track.processed_next = restored.next_offset;
            tracing::info!(topic = %tp.topic, partition = tp.partition, epoch = claim.epoch,
                next_offset = ?restored.next_offset, bytes = restored.state.len(),
                "checkpoint restored");
        }
        track.claim = Some(claim);
        Ok(())
    }

    /// For a [`StateScope::Whole`] core: claims the group's checkpoint on the first
    /// assignment (restoring the core from it), then starts each assigned partition where the
    /// core's state leaves off.
    async fn adopt_partition(
        &mut self,
        store: Arc<dyn StateStore>,
        tp: &TopicPartition,
    ) -> Result<(), RuntimeError> {
        if self.whole.is_none() {
            let key = checkpoint::whole_key(&self.group);
            let mut outage = Outage::new(&self.runner.health, "state store");
            let (claim, restore) = loop {
                match checkpoint::claim(store.as_ref(), key.clone()).await {
                    Err(e) if e.is_transient() => outage.wait(&e).await,
                    result => break result?,
                }
            };
            let mut offsets = BTreeMap::new();
            if let Some(restored) = restore {
                let whole = WholeState::decode(&key, &restored.state)?;
                self.runner
                    .processor
                    .restore_whole(&whole.state)
                    .map_err(|reason| RuntimeError::Restore {
                        key: key.clone(),
                        reason,
                    })?;
                tracing::info!(
                    key,
                    epoch = claim.epoch,
                    partitions = whole.offsets.len(),
                    bytes = whole.state.len(),
                    "whole-core checkpoint restored"
                );
                offsets = whole.offsets;
            }
            self.whole = Some(WholeHold { claim, offsets });
        }
        let next = self
            .whole
            .as_ref()
            .and_then(|hold| hold.offsets.get(&(tp.topic.clone(), tp.partition)).copied());
        if let (Some(next), Some(track)) = (next, self.partitions.get_mut(tp)) {
            track.skip_below = Some(next);
            track.next = track.next.max(Some(next));
            track.processed_next = Some(next);
        }
        Ok(())
    }

    /// A whole core keeps what it read of a partition this instance no longer owns: its
    /// offsets stay with the state, so the partition resumes after them if it comes back.
    /// Another instance taking it over means two are running, which a whole core does not
    /// support: the claim of the other fences this one off at its next checkpoint.
    fn let_go_whole(&mut self, tp: &TopicPartition, track: &PartitionTrack) {
        let Some(hold) = self.whole.as_mut() else {
            return;
        };
        if let Some(next) = track.processed_next {
            hold.offsets.insert((tp.topic.clone(), tp.partition), next);
        }
    }

    /// A partition taken from a whole core by the group (not by this instance rejoining).
    fn warn_single_instance(&self, tp: &TopicPartition) {
        if self.whole.is_some() {
            tracing::warn!(topic = %tp.topic, partition = tp.partition,
                service = self.runner.processor.name(),
                "partition revoked from a single-instance service: is a second instance running?");
        }
    }

    /// Records known to wait on owned partitions while the consumer has handed over nothing
    /// for [`RunnerConfig::stall_after`]: a member the group counts as the partitions' owner
    /// but that is not fetching them. Partitions whose last fetch reached the end are left
    /// out (an end above the last record, e.g. after a transaction marker, is no backlog).
    fn stalled(&self) -> Option<i64> {
        if self.last_record.elapsed() < self.runner.config.stall_after {
            return None;
        }
        let waiting: i64 = self
            .partitions
            .values()
            .filter(|t| t.at_end != Some(true))
            .filter_map(|t| Some((t.end? - t.next?).max(0)))
            .sum();
        (waiting > 0).then_some(waiting)
    }

    /// Leaves the consumer group and joins it again, the way a restart would but without
    /// losing the process: everything in flight is acknowledged and committed (with its
    /// checkpoints), the owned partitions are let go as on a revocation, and the new member's
    /// assignment claims them afresh. A broker that hands a member partitions without ever
    /// serving it their records (seen on tansu) is healed by this; a real stall shows as a
    /// warning and `llmopt_consumer_rejoins_total` every `stall_after`.
    async fn rejoin(&mut self, waiting: i64) -> Result<(), RuntimeError> {
        tracing::warn!(service = self.runner.processor.name(), group = %self.group,
            waiting, quiet_s = self.last_record.elapsed().as_secs(),
            "owned partitions have records waiting but nothing was fetched; rejoining the consumer group");
        let settled = match self.complete(true).await {
            Ok(()) => self.commit().await,
            Err(e) => Err(e),
        };
        match settled {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                // An outage, not a stall: what was read cannot be committed now. Try again
                // after another `stall_after`.
                tracing::warn!(error = %e, "cannot commit before rejoining; staying in the group");
                self.last_record = Instant::now();
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.runner.metrics.rejoins.inc();
        let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in owned {
            if let Some(track) = self.partitions.remove(&tp) {
                self.let_go_whole(&tp, &track);
            }
            self.signal(&tp, PartitionState::Revoked)?;
        }
        self.complete(true).await?;
        // The old member leaves first, so the group never waits for a member nobody polls.
        // Its offsets are committed already; a failed goodbye only delays the next join.
        if let Err(e) = std::mem::replace(&mut self.consumer, Box::new(NoGroup))
            .close()
            .await
        {
            tracing::warn!(error = %e, "leaving the consumer group failed; joining again anyway");
        }
        self.consumer = self
            .runner
            .transport
            .subscribe(&self.group, &self.inputs)
            .await?;
        self.last_record = Instant::now();
        self.unassigned_since = None;
        self.note_assignment(0);
        Ok(())
    }

    /// Writes the whole-core checkpoint if the core processed records since the last one.
    async fn save_whole(&mut self, store: Arc<dyn StateStore>) -> Result<(), RuntimeError> {
        if !self.partitions.values().any(|t| t.dirty) {
            return Ok(());
        }
        let state = self.runner.processor.checkpoint_whole();
        let Some(hold) = self.whole.as_mut() else {
            return Ok(());
        };
        for (tp, track) in self.partitions.iter_mut() {
            track.dirty = false;
            if let Some(next) = track.processed_next {
                hold.offsets.insert((tp.topic.clone(), tp.partition), next);
            }
        }
        let Some(state) = state else {
            return Ok(());
        };
        let record = WholeState {
            offsets: hold.offsets.clone(),
            state,
        }
        .encode();
        let mut outage = Outage::new(&self.runner.health, "state store");
        loop {
            // The record's own offset field is unused: the offsets are in the record.
            match checkpoint::save(store.as_ref(), &mut hold.claim, 0, record.clone()).await {
                Err(e) if e.is_transient() => outage.wait(&e).await,
                result => return result,
            }
        }
    }

    /// Writes a checkpoint for every owned partition the core processed records of since the
    /// last one. Everything read must be acknowledged (see [`Stage::commit`]).
    async fn save_checkpoints(&mut self) -> Result<(), RuntimeError> {
        let Some(store) = self.runner.checkpoints.clone() else {
            return Ok(());
        };
        self.flush_effects().await?;
        if self.runner.processor.state_scope() == StateScope::Whole {
            return self.save_whole(store).await;
        }
        let dirty: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in dirty {
            let Some(topic) = self.runner.logical.get(&tp.topic).copied() else {
                continue;
            };
            let state = self.runner.processor.checkpoint(topic, tp.partition);
            let Some(track) = self.partitions.get_mut(&tp) else {
                continue;
            };
            track.dirty = false;
            let (Some(state), Some(claim), Some(next)) =
                (state, track.claim.as_mut(), track.processed_next)
            else {
                continue;
            };
            let mut outage = Outage::new(&self.runner.health, "state store");
            loop {
                match checkpoint::save(store.as_ref(), claim, next, state.clone()).await {
                    Err(e) if e.is_transient() => outage.wait(&e).await,
                    result => break result?,
                }
            }
        }
        Ok(())
    }
}

/// Waiting out an outage of the broker or the state store: exponential backoff from 100 ms to
/// 5 s, `/ready` false meanwhile (and again true once the loop finds the service caught up), a
/// warning on the first failure and every tenth. Nothing is acked or committed while waiting.
struct Outage<'a> {
    health: &'a Health,
    what: &'static str,
    attempts: u32,
    since: Instant,
}

impl<'a> Outage<'a> {
    fn new(health: &'a Health, what: &'static str) -> Self {
        Self {
            health,
            what,
            attempts: 0,
            since: Instant::now(),
        }
    }

    async fn wait(&mut self, error: &RuntimeError) {
        self.health.set_ready(false);
        if self.attempts % 10 == 0 {
            tracing::warn!(what = self.what, error = %error, attempts = self.attempts,
                down_for_ms = self.since.elapsed().as_millis() as u64, "outage: retrying");
        }
        let backoff = Duration::from_millis(100u64.saturating_mul(1 << self.attempts.min(6)))
            .min(Duration::from_secs(5));
        self.attempts = self.attempts.saturating_add(1);
        tokio::time::sleep(backoff).await;
    }
}

/// A stage of an in-process pipeline, whatever its core: lets a driver hold the stages of every
/// service in one list and drain them in pipeline order.
#[async_trait::async_trait]
pub trait Drain: Send {
    /// Service name.
    fn name(&self) -> &'static str;

    /// See [`Stage::drain`].
    async fn drain(&mut self, idle: Duration) -> Result<u64, RuntimeError>;

    /// See [`Stage::run`]; the core is dropped at the end.
    async fn run_until(self: Box<Self>, shutdown: Shutdown) -> Result<RunSummary, RuntimeError>;

    /// See [`Stage::stop`]; the core is dropped.
    async fn stop_stage(self: Box<Self>) -> Result<RunSummary, RuntimeError>;
}

#[async_trait::async_trait]
impl<P: Processor, E: Effects> Drain for Stage<P, E> {
    fn name(&self) -> &'static str {
        self.runner.processor.name()
    }

    async fn drain(&mut self, idle: Duration) -> Result<u64, RuntimeError> {
        Stage::drain(self, idle).await
    }

    async fn run_until(self: Box<Self>, shutdown: Shutdown) -> Result<RunSummary, RuntimeError> {
        Ok(Stage::run(*self, shutdown).await?.1)
    }

    async fn stop_stage(self: Box<Self>) -> Result<RunSummary, RuntimeError> {
        Ok(Stage::stop(*self).await?.1)
    }
}
