//! The consume → process → publish → ack loop, the same for every service and transport.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_cloudevents::{DecodeLimits, KafkaMessage};
use llmopt_events::wire::{DataFormat, EventMeta, WireError};
use llmopt_events::{AnyEvent, SchemaRegistry};
use llmopt_transport::{
    Consumer, Delivered, InboundMessage, LogicalTopic, OutboundMessage, PendingDelivery,
    TopicNames, Transport,
};

use tracing::Instrument;

use crate::health::Health;
use crate::metrics::ServiceMetrics;
use crate::shutdown::Shutdown;
use crate::{dead_letter_for, trace, Effects, Input, Output, Processor, RuntimeError};

/// How often consumer lag is exported (read from the transport: on Kafka, librdkafka's statistics).
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Commit acked offsets after this many inputs (librdkafka also commits acked offsets every
    /// second in the background).
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
        }
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
        let consumer = self.transport.subscribe(&group, &inputs).await?;
        tracing::info!(service = self.processor.name(), ?inputs, "consuming");
        Ok(Stage {
            runner: self,
            consumer,
            since_commit: 0,
            in_flight: VecDeque::new(),
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
                if let Ok((input, _)) = self.decode(&message) {
                    if self.processor.validate(&input).is_ok() {
                        let _ = self.processor.process(&input);
                        replayed += 1;
                    }
                }
            }
            if message.offset + 1 >= end {
                remaining.remove(&tp);
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
    async fn handle(&mut self, message: InboundMessage) -> Result<InFlight, RuntimeError> {
        let started = Instant::now();
        self.metrics
            .events_in
            .with_label_values(&[message.topic.as_str()])
            .inc();
        self.summary.consumed += 1;
        let decoded = self.decode(&message);
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
        let delivery =
            match decoded {
                Err(e) => Some(self.dead_letter(&message, e.kind(), &e.to_string(), &span)?),
                Ok((input, incoming)) => if let Err(rejection) = self.processor.validate(&input) {
                    Some(self.dead_letter(&message, rejection.kind, &rejection.message, &span)?)
                } else if !self
                    .effects
                    .admit(&input)
                    .instrument(
                        tracing::info_span!(target: "llmopt::trace", parent: &span, "state admit"),
                    )
                    .await?
                {
                    self.summary.duplicates += 1;
                    self.metrics
                        .duplicates
                        .with_label_values(&[message.topic.as_str()])
                        .inc();
                    None
                } else {
                    outputs = self.processor.process(&input);
                    let traceparent = trace::traceparent(&span).or(incoming);
                    self.enqueue(&outputs, traceparent.as_deref(), &span)?
                },
            };
        Ok(InFlight {
            message,
            outputs,
            delivery,
            started,
            span,
        })
    }

    fn decode(&self, message: &InboundMessage) -> Result<(Input, Option<String>), WireError> {
        let record = KafkaMessage {
            key: message.key.clone(),
            headers: message.headers.clone(),
            value: message.value.clone(),
        };
        let (ce, _) = llmopt_cloudevents::decode(&record, &self.config.limits)?;
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

/// An input whose outputs are on their way: acked once they are acknowledged.
struct InFlight {
    message: InboundMessage,
    outputs: Vec<Output>,
    delivery: Option<PendingDelivery>,
    started: Instant,
    /// The input's span, closed when the input is acked.
    span: tracing::Span,
}

/// Most inputs in flight before the runner waits for the oldest acknowledgement.
const MAX_IN_FLIGHT: usize = 10_000;

/// A runner that has joined its consumer group.
pub struct Stage<P: Processor, E: Effects> {
    runner: Runner<P, E>,
    consumer: Box<dyn Consumer>,
    since_commit: usize,
    in_flight: VecDeque<InFlight>,
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
    pub async fn drain(&mut self, idle: Duration) -> Result<u64, RuntimeError> {
        let mut processed = 0;
        loop {
            match self.consumer.poll(idle).await? {
                Some(message) => {
                    self.handle_and_maybe_commit(message).await?;
                    processed += 1;
                }
                None if self.consumer.assignment()?.is_empty() => continue,
                None => break,
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
        loop {
            if lag_reported.elapsed() >= LAG_INTERVAL {
                lag_reported = Instant::now();
                let metrics = self.runner.metrics.clone();
                Runner::<P, E>::report_lag(metrics, self.consumer.as_mut()).await;
            }
            let polled = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                polled = self.consumer.poll(self.runner.config.poll_timeout) => polled?,
            };
            let Some(message) = polled else {
                if self.consumer.assignment()?.is_empty() {
                    // Still joining the group: not caught up with anything yet.
                    continue;
                }
                // Nothing left to read: caught up. Wait for what is in flight and commit, so
                // the group's offsets show it (lag dashboards and step barriers read them).
                self.complete(true).await?;
                self.commit().await?;
                self.runner.health.set_ready(true);
                self.runner.health.set_idle(true);
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
        }
        self.stop().await
    }

    /// Commits, leaves the group and returns the core and what was done.
    pub async fn stop(mut self) -> Result<(P, RunSummary), RuntimeError> {
        self.runner.health.set_ready(false);
        self.complete(true).await?;
        self.commit().await?;
        self.consumer.close().await?;
        let runner = self.runner;
        tracing::info!(service = runner.processor.name(), summary = ?runner.summary, "stopped");
        Ok((runner.processor, runner.summary))
    }

    async fn handle_and_maybe_commit(
        &mut self,
        message: InboundMessage,
    ) -> Result<(), RuntimeError> {
        self.runner.health.set_idle(false);
        let in_flight = self.runner.handle(message).await?;
        self.in_flight.push_back(in_flight);
        let block = self.in_flight.len() > MAX_IN_FLIGHT;
        self.complete(block).await
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
            self.consumer.ack(&done.message)?;
            self.runner
                .effects
                .after_publish(&done.outputs)
                .instrument(tracing::info_span!(
                    target: "llmopt::trace",
                    parent: &done.span,
                    "state after_publish"
                ))
                .await?;
            self.runner.health.count_handled();
            self.runner
                .metrics
                .processing_seconds
                .with_label_values(&[done.message.topic.as_str()])
                .observe(done.started.elapsed().as_secs_f64());
            self.since_commit += 1;
            if self.since_commit >= self.runner.config.commit_every {
                self.commit().await?;
            }
            must_wait = wait_all || self.in_flight.len() > MAX_IN_FLIGHT;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), RuntimeError> {
        if self.since_commit > 0 {
            self.consumer.commit().await?;
            self.since_commit = 0;
        }
        Ok(())
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
