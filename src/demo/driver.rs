//! The closed loop in simulated time: the simulated fleet produces telemetry under the live
//! routing config, the services turn it into alerts, decisions and config changes, and the next
//! step of the fleet reads the config the actuator wrote.
//!
//! Simulated time advances in fixed steps. After each step the driver waits for the pipeline to
//! settle before the fleet reads the routing config again, so a run depends only on the seed and
//! the scenario, never on thread timing: in process, the stages are drained one after another
//! in pipeline order; against Kafka, services run concurrently and [`Settle`] waits until all are
//! idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use llmopt_cloudevents::KafkaMessage;
use llmopt_events::wire::{self, DataFormat, EventMeta};
use llmopt_events::{AnyEvent, SchemaRegistry};
use llmopt_runtime::health::Health;
use llmopt_sim::{RouteSnapshot, SimEvent, Simulator};
use llmopt_state::StateStore;
use llmopt_transport::{Consumer, LogicalTopic, OutboundMessage, TopicNames, Transport};

use super::record::Record;
use crate::pipeline::ServiceHandle;

/// Waits until the services have processed everything published so far.
#[async_trait]
pub trait Settle: Send {
    /// Returns once the pipeline is quiet.
    async fn settle(&mut self) -> anyhow::Result<()>;
}

/// In-process settling: drain each stage in pipeline order until a full pass moves nothing.
/// The embedded log is complete the moment a stage returns (every publish is in it), so each
/// drain reads what is there and never waits on a timer.
pub struct DrainInOrder {
    /// The services, in pipeline order.
    pub services: Vec<ServiceHandle>,
}

#[async_trait]
impl Settle for DrainInOrder {
    async fn settle(&mut self) -> anyhow::Result<()> {
        loop {
            let mut moved = 0;
            for service in &mut self.services {
                moved += service.stage.drain(Duration::ZERO).await?;
            }
            if moved == 0 {
                return Ok(());
            }
        }
    }
}

/// Settling for services running concurrently (separate tasks or processes with their own Kafka
/// clients): every service idle, and no input handled by any of them for `quiet`.
pub struct WatchIdle {
    /// Health of each service.
    pub health: Vec<Arc<Health>>,
    /// How long everything must stay quiet.
    pub quiet: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

#[async_trait]
impl Settle for WatchIdle {
    async fn settle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let handled = |h: &[Arc<Health>]| h.iter().map(|h| h.handled()).sum::<u64>();
        let mut last = handled(&self.health);
        let mut quiet_since = Instant::now();
        loop {
            anyhow::ensure!(Instant::now() < deadline, "pipeline did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = handled(&self.health);
            let all_idle = self.health.iter().all(|h| h.is_idle());
            if now != last || !all_idle {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= self.quiet {
                return Ok(());
            }
        }
    }
}

/// The simulated fleet wired to a pipeline.
pub struct ClosedLoop {
    sim: Simulator,
    transport: Arc<dyn Transport>,
    store: Arc<dyn StateStore>,
    names: TopicNames,
    console: Box<dyn Consumer>,
    registry: SchemaRegistry,
    step_ms: i64,
    console_idle: Duration,
    /// Calls published so far.
    pub calls: u64,
    /// Wall time spent producing telemetry (simulating the fleet, encoding and publishing its
    /// events): the producers' work, outside the pipeline's.
    pub generation: Duration,
    /// What the operator-facing topics showed.
    pub record: Record,
    /// Hears every event read from the operator topics (the console's view).
    observer: Option<EventObserver>,
}

/// Hears every event read from the operator topics (the console's view).
pub type EventObserver = Box<dyn FnMut(&AnyEvent) + Send>;

impl ClosedLoop {
    /// Creates the topics, subscribes the console and publishes each route's initial config.
    pub async fn new(
        sim: Simulator,
        transport: Arc<dyn Transport>,
        store: Arc<dyn StateStore>,
        names: TopicNames,
        step_ms: i64,
        console_group: &str,
        console_idle: Duration,
    ) -> anyhow::Result<Self> {
        transport.ensure_topics(&names.all_specs()).await?;
        let watched = [
            LogicalTopic::Alerts,
            LogicalTopic::Decisions,
            LogicalTopic::Windows,
            LogicalTopic::ConfigChanges,
        ]
        .map(|t| names.name(t));
        let console = transport.subscribe(console_group, &watched).await?;
        let mut closed = Self {
            sim,
            transport,
            store,
            names,
            console,
            registry: SchemaRegistry::current(),
            step_ms: step_ms.max(1),
            console_idle,
            calls: 0,
            generation: Duration::ZERO,
            record: Record::default(),
            observer: None,
        };
        let initial = closed.sim.initial_config_changes(closed.sim.start_ms());
        let events: Vec<SimEvent> = initial.into_iter().map(SimEvent::ConfigChange).collect();
        closed.publish(&events).await?;
        Ok(closed)
    }

    /// Hands every event read from the operator topics to `observer` as well (the console).
    pub fn observe(&mut self, observer: EventObserver) {
        self.observer = Some(observer);
    }

    /// The simulator (clock, ground truth).
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Whether the scenario has run to its end.
    pub fn finished(&self) -> bool {
        self.sim.now_ms() >= self.sim.end_ms()
    }

    /// One step of simulated time: read the live routing config, let the fleet run, publish.
    pub async fn step(&mut self) -> anyhow::Result<usize> {
        let mut snapshots = HashMap::new();
        let routes: Vec<(String, String)> = self
            .sim
            .fleet()
            .routes()
            .map(|(a, r)| (a.name.clone(), r.name.clone()))
            .collect();
        for (app, route) in routes {
            let live = self.read_live_config(&app, &route).await?;
            if let Some(cfg) = live {
                snapshots.insert(
                    (app, route),
                    RouteSnapshot {
                        version: cfg.version,
                        targets: cfg.targets,
                        params: cfg.params,
                    },
                );
            }
        }
        let until = (self.sim.now_ms() + self.step_ms).min(self.sim.end_ms());
        let mut routing = |app: &str, route: &str| {
            snapshots
                .get(&(app.to_string(), route.to_string()))
                .cloned()
        };
        let generating = Instant::now();
        let events = self.sim.advance(until, &mut routing);
        self.publish(&events).await?;
        self.generation += generating.elapsed();
        Ok(events.len())
    }

    /// A route's live config, as a gateway reads it: through a state-store outage (a Redis
    /// restart) it retries with backoff for up to a minute before giving up.
    async fn read_live_config(
        &self,
        app: &str,
        route: &str,
    ) -> anyhow::Result<Option<llmopt_actuator::RoutingConfig>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut backoff = Duration::from_millis(100);
        loop {
            match llmopt_actuator::read_live_config(self.store.as_ref(), app, route).await {
                Err(llmopt_actuator::LiveConfigError::State(e))
                    if e.is_transient() && Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, app, route, "live config unavailable: retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                result => return Ok(result?),
            }
        }
    }

    async fn publish(&mut self, events: &[SimEvent]) -> anyhow::Result<()> {
        let mut calls = Vec::new();
        let mut changes = Vec::new();
        for event in events {
            match event {
                SimEvent::Call { call, id, source } => {
                    let meta = EventMeta {
                        id: id.clone(),
                        source: source.clone(),
                        time_ms: Some(call.event_time),
                        partition_key: Some(event.key()),
                        traceparent: None,
                        subject: None,
                    };
                    calls.push(OutboundMessage::from(wire::to_kafka(
                        call,
                        &meta,
                        DataFormat::Avro,
                    )?));
                }
                SimEvent::ConfigChange(change) => {
                    let meta = EventMeta {
                        id: change.id.clone(),
                        source: "/operators".into(),
                        time_ms: Some(change.event_time),
                        partition_key: Some(event.key()),
                        traceparent: None,
                        subject: None,
                    };
                    changes.push(OutboundMessage::from(wire::to_kafka(
                        change,
                        &meta,
                        DataFormat::Avro,
                    )?));
                }
            }
        }
        self.calls += calls.len() as u64;
        // Changes first: a manual change at time t precedes the calls served under it.
        let topic = self.names.name(LogicalTopic::ConfigChanges);
        self.transport.publish_batch(&topic, changes).await?;
        let topic = self.names.name(LogicalTopic::TelemetryRaw);
        self.transport.publish_batch(&topic, calls).await?;
        Ok(())
    }

    /// Reads what appeared on the alert, decision and window topics; returns the new alerts and
    /// decisions for the console, in order.
    pub async fn collect(&mut self) -> anyhow::Result<Vec<AnyEvent>> {
        let mut shown = Vec::new();
        let mut empty = 0;
        // Settled pipelines have everything written; a few empty polls confirm the end.
        while empty < 3 {
            let Some(m) = self.console.poll(self.console_idle).await? else {
                if !self.console.assignment()?.is_empty() {
                    empty += 1;
                }
                continue;
            };
            empty = 0;
            let record = KafkaMessage {
                key: m.key.clone(),
                headers: m.headers.clone(),
                value: m.value.clone(),
            };
            let (ce, _) = llmopt_cloudevents::decode(&record, &Default::default())?;
            let event = AnyEvent::from_cloudevent(&ce, &self.registry)?;
            if let Some(observer) = self.observer.as_mut() {
                observer(&event);
            }
            match event {
                AnyEvent::WindowAggregate(w) => self.record.add_window(w),
                AnyEvent::Alert(a) => {
                    self.record.alerts.push(a.clone());
                    shown.push(AnyEvent::Alert(a));
                }
                AnyEvent::Decision(d) => {
                    self.record.decisions.push(d.clone());
                    shown.push(AnyEvent::Decision(d));
                }
                AnyEvent::ConfigChange(c) => self.record.config_changes.push(c),
                _ => {}
            }
            self.console.ack(&m)?;
        }
        self.console.commit().await?;
        Ok(shown)
    }

    /// Leaves the console's consumer group.
    pub async fn close(self) -> anyhow::Result<Record> {
        self.console.close().await?;
        Ok(self.record)
    }
}
