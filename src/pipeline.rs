//! Every service of the closed loop built from one configuration, on whatever transport and
//! state store it is given. `llmopt run` starts one of them; `llmopt demo` and the end-to-end
//! tests start all of them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use llmopt_runtime::health::Health;
use llmopt_runtime::metrics::ServiceMetrics;
use llmopt_runtime::runner::{Drain, Runner, RunnerConfig};
use llmopt_runtime::{Effects, NoEffects, Processor};
use llmopt_state::StateStore;
use llmopt_transport::{TopicNames, Transport};

use crate::config::AppConfig;

/// The services of the closed loop, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Validate, normalise, deduplicate and price raw telemetry.
    Ingest,
    /// Event-time windows, percentiles, counts, cost, quality.
    Aggregator,
    /// Anomalies, SLO rules, alerts.
    Detector,
    /// Optimisation decisions.
    Decision,
    /// Applies decisions to the live routing config.
    Actuator,
    /// Runs quantization jobs and publishes artifacts (not part of the in-process demo loop:
    /// it needs a real model on disk).
    Quantizer,
    /// Forwards alerts to Alertmanager and webhooks (not part of the in-process demo loop: it
    /// talks to receivers outside the process).
    Notifier,
}

impl Service {
    /// Every service, in pipeline order (the order an in-process driver drains them).
    pub const ALL: [Service; 5] = [
        Service::Ingest,
        Service::Aggregator,
        Service::Detector,
        Service::Decision,
        Service::Actuator,
    ];

    /// The service's name: consumer group suffix, metrics label, `llmopt run` argument.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Aggregator => "aggregator",
            Service::Detector => "detector",
            Service::Decision => "decision",
            Service::Actuator => "actuator",
            Service::Quantizer => "quantizer",
            Service::Notifier => "notifier",
        }
    }
}

/// A started service: its stage and the handles an operator (or a driver) watches.
pub struct ServiceHandle {
    /// The service.
    pub service: Service,
    /// The runner, joined to its consumer group.
    pub stage: Box<dyn Drain>,
    /// Its health flags (ready, idle, handled).
    pub health: Arc<Health>,
    /// Its metrics.
    pub metrics: Arc<ServiceMetrics>,
}

/// Builds `service` from `config` and joins its consumer group on `transport`.
pub async fn start(
    service: Service,
    config: &AppConfig,
    transport: Arc<dyn Transport>,
    store: Arc<dyn StateStore>,
    runner_config: RunnerConfig,
) -> anyhow::Result<ServiceHandle> {
    let observed = Observed::new(service);
    start_observed(service, config, transport, store, runner_config, observed).await
}

/// The health flags and metrics of a service, created before it starts so its admin endpoint
/// can answer `/health` (and `/ready` false) while it joins its group and rebuilds its state.
#[derive(Clone)]
pub struct Observed {
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// Its metrics.
    pub metrics: Arc<ServiceMetrics>,
}

impl Observed {
    /// Fresh flags (live, not ready) and metrics labelled with the service's name.
    pub fn new(service: Service) -> Self {
        Self {
            health: Arc::new(Health::new()),
            metrics: Arc::new(ServiceMetrics::new(service.name())),
        }
    }
}

/// [`start`] with flags and metrics the caller already serves.
pub async fn start_observed(
    service: Service,
    config: &AppConfig,
    transport: Arc<dyn Transport>,
    store: Arc<dyn StateStore>,
    runner_config: RunnerConfig,
    observed: Observed,
) -> anyhow::Result<ServiceHandle> {
    // Cores with state checkpoint it in the state store (per partition for the aggregator,
    // whole for the detector, decision and actuator) when the runner config asks for
    // checkpoints: long-running services. Without checkpoints a restarted service rebuilds its
    // state by replaying its inputs up to its committed offsets (in-process runs rebuild
    // nothing either way: they start from empty topics). Ingest keeps no state of its own, and
    // the quantizer's (jobs handled) lives in the state store: replaying its inputs would
    // re-run every job. The notifier's (alerts firing) lives in the state store too.
    let stateful = !matches!(
        service,
        Service::Ingest | Service::Quantizer | Service::Notifier
    );
    let checkpointed = runner_config.checkpoints && stateful;
    let runner_config = RunnerConfig {
        rebuild_state: !checkpointed && stateful,
        ..runner_config
    };
    let checkpoints = checkpointed.then(|| store.clone());
    let parts = Parts {
        transport,
        names: TopicNames::new(&config.transport),
        runner_config,
        metrics: observed.metrics,
        health: observed.health,
        checkpoints,
    };
    match service {
        Service::Ingest => {
            let horizon = Duration::from_millis(config.ingest.dedup_horizon_ms);
            let effects = llmopt_ingest::DedupEffects::new(store, horizon);
            let core = llmopt_ingest::Ingest::new(config.ingest.clone());
            parts.start(service, core, effects).await
        }
        Service::Aggregator => {
            let core = llmopt_aggregator::Aggregator::new(config.aggregator.clone())
                .context("aggregator configuration")?;
            let effects =
                llmopt_aggregator::FleetMetrics::new(parts.metrics.registry(), service.name())
                    .context("fleet metrics")?;
            parts.start(service, core, effects).await
        }
        Service::Detector => {
            let core = llmopt_detector::Detector::new(config.detector.clone())
                .context("detector configuration")?;
            parts.start(service, core, NoEffects).await
        }
        Service::Decision => {
            let core = llmopt_decision::Decision::new(config.decision.clone())
                .context("decision configuration")?;
            parts.start(service, core, NoEffects).await
        }
        Service::Actuator => {
            let core = llmopt_actuator::Actuator::new();
            let effects = llmopt_actuator::LiveConfigEffects::new(store);
            parts.start(service, core, effects).await
        }
        Service::Quantizer => {
            let core = llmopt_quantizer::Quantizer::new(
                config.quantizer.clone(),
                burn::tensor::Device::flex(),
            );
            let effects = llmopt_quantizer::HandledJobs::new(store);
            parts.start(service, core, effects).await
        }
        Service::Notifier => {
            anyhow::ensure!(
                config.notifier.has_sinks(),
                "the notifier has nowhere to send alerts: set notifier.alertmanager_url or \
                 notifier.webhook_url (LLMOPT_NOTIFIER__ALERTMANAGER_URL)"
            );
            let effects = llmopt_notifier::NotifyEffects::new(
                config.notifier.clone(),
                store,
                parts.metrics.registry(),
            );
            parts
                .start(service, llmopt_notifier::Notifier, effects)
                .await
        }
    }
}

struct Parts {
    transport: Arc<dyn Transport>,
    names: TopicNames,
    runner_config: RunnerConfig,
    metrics: Arc<ServiceMetrics>,
    health: Arc<Health>,
    checkpoints: Option<Arc<dyn StateStore>>,
}

impl Parts {
    async fn start<P: Processor, E: Effects + 'static>(
        self,
        service: Service,
        core: P,
        effects: E,
    ) -> anyhow::Result<ServiceHandle> {
        let health = self.health;
        let metrics = self.metrics;
        let runner = Runner::new(
            core,
            effects,
            self.transport,
            self.names,
            metrics.clone(),
            health.clone(),
            self.runner_config,
        );
        let runner = match self.checkpoints {
            Some(store) => runner.with_checkpoints(store),
            None => runner,
        };
        let stage = runner.start().await?;
        Ok(ServiceHandle {
            service,
            stage: Box::new(stage),
            health,
            metrics,
        })
    }
}
