//! `llmopt demo`: every service in one process on the embedded transport and state store,
//! driven by the simulated fleet through a scenario of incidents, with the loop closed through
//! the live routing config.

pub mod driver;
pub mod policy;
pub mod record;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmopt_actuator::RoutingConfig;
use llmopt_events::{AlertStatus, AnyEvent};
use llmopt_runtime::runner::RunnerConfig;
use llmopt_runtime::shutdown::Shutdown;
use llmopt_sim::{FleetSpec, Scenario, Simulator};
use llmopt_state::memory::MemoryStore;
use llmopt_state::StateStore;
use llmopt_transport::embedded::EmbeddedTransport;
use llmopt_transport::{TopicNames, Transport};

use crate::config::AppConfig;
use crate::pipeline::{self, Service};
use driver::{ClosedLoop, DrainInOrder, Settle};
use record::Record;
use report::{clock, Outcome};

/// Start of simulated time: 2026-01-01T00:00:00Z.
pub const SIM_START_MS: i64 = 1_767_225_600_000;

/// How a demo run goes.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seed of the simulated fleet.
    pub seed: u64,
    /// The scenario (the built-in default unless a file is given).
    pub scenario: Scenario,
    /// Simulated seconds per step; the fleet reads the routing config once per step.
    pub step_s: u64,
    /// Simulated seconds per real second; 0 runs as fast as possible.
    pub speed: f64,
    /// Cut the scenario short (simulated seconds).
    pub duration_s: Option<u64>,
    /// Most telemetry events per real second (`llmopt loadgen --rate`); `None`: no cap.
    pub max_rate: Option<f64>,
}

/// What a run produced.
pub struct DemoResult {
    /// Incidents, alerts and decisions attributed.
    pub outcome: Outcome,
    /// Everything seen on the operator topics.
    pub record: Record,
    /// The live routing config at the end, per app/route.
    pub routing: BTreeMap<(String, String), RoutingConfig>,
    /// Telemetry events produced.
    pub calls: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Part of `elapsed` spent generating the telemetry (the simulated fleet's work).
    pub generation: Duration,
    /// Per route: cost and expected quality of its calls next to the baselines' (always the
    /// most capable model, the initial routing) for the same calls.
    pub ledgers: Vec<llmopt_sim::RouteLedger>,
}

/// The scenario in `path` (TOML), or the built-in default one.
pub fn load_scenario(path: Option<&std::path::Path>) -> anyhow::Result<Scenario> {
    use anyhow::Context;
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?;
            Scenario::from_toml_str(&text).with_context(|| format!("scenario {}", path.display()))
        }
        None => Ok(Scenario::default()),
    }
}

/// The simulator and the demo's configuration for `options`.
pub fn prepare(base: AppConfig, options: &DemoOptions) -> anyhow::Result<(AppConfig, Simulator)> {
    prepare_fleet(base, options, FleetSpec::default(), SIM_START_MS)
}

/// [`prepare`] for another fleet than the default one, starting at `start_ms`.
pub fn prepare_fleet(
    base: AppConfig,
    options: &DemoOptions,
    fleet: FleetSpec,
    start_ms: i64,
) -> anyhow::Result<(AppConfig, Simulator)> {
    let mut scenario = options.scenario.clone();
    if let Some(d) = options.duration_s {
        scenario.duration_s = scenario.duration_s.min(d);
    }
    let sim = Simulator::new(fleet.clone(), scenario, options.seed, start_ms)?;
    let mut config = policy::for_fleet(base, &fleet);
    config.ingest.prices = ingest_prices(&sim);
    Ok((config, sim))
}

/// The simulator's list prices as ingest's price table, so unpriced calls cost what they should.
fn ingest_prices(sim: &Simulator) -> llmopt_ingest::PriceTable {
    llmopt_ingest::PriceTable {
        models: sim
            .price_table()
            .iter()
            .map(|(provider, model, p)| llmopt_ingest::ModelPrice {
                provider: provider.to_string(),
                model: model.to_string(),
                input_per_1k: p.input_per_1k,
                output_per_1k: p.output_per_1k,
            })
            .collect(),
    }
}

/// One console line for an alert or decision.
pub fn console_line(start_ms: i64, event: &AnyEvent) -> Option<String> {
    match event {
        AnyEvent::Alert(a) => Some(format!(
            "[{}] ALERT {:<8} {:<8} {:<24} {}",
            clock(start_ms, a.event_time),
            if a.status == AlertStatus::Firing {
                "FIRING"
            } else {
                "RESOLVED"
            },
            format!("{:?}", a.severity).to_uppercase(),
            a.alertname,
            a.summary
        )),
        AnyEvent::Decision(d) => Some(format!(
            "[{}] DECISION {:<11} {:<20} {}/{} {} {} ({}{})",
            clock(start_ms, d.event_time),
            format!("{:?}", d.state).to_uppercase(),
            format!("{:?}", d.strategy),
            d.app,
            d.route,
            d.action,
            d.reason,
            d.evidence.test,
            d.evidence
                .p_value
                .map(|p| format!(", p={p:.2e}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// Runs the whole loop in this process: embedded transport, in-memory store, stages drained in
/// pipeline order after every step. `print` receives the console lines as they happen.
pub async fn run_embedded(
    base: AppConfig,
    options: &DemoOptions,
    print: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<DemoResult> {
    let (config, sim) = prepare(base, options)?;
    run_embedded_prepared(config, sim, options, print).await
}

/// [`run_embedded`] of a configuration and simulator already prepared (another fleet, a
/// policy of its own).
pub async fn run_embedded_prepared(
    config: AppConfig,
    sim: Simulator,
    options: &DemoOptions,
    print: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<DemoResult> {
    let transport: Arc<dyn Transport> =
        Arc::new(EmbeddedTransport::new(config.transport.partitions));
    run_embedded_on(config, sim, options, print, transport, None).await
}

/// [`run_embedded_prepared`] on a given (embedded) transport, with every event of the operator
/// topics also handed to `observer` (the console of `llmopt demo --console`, which publishes
/// approvals on the same transport).
pub async fn run_embedded_on(
    config: AppConfig,
    sim: Simulator,
    options: &DemoOptions,
    print: &mut (dyn FnMut(String) + Send),
    transport: Arc<dyn Transport>,
    observer: Option<driver::EventObserver>,
) -> anyhow::Result<DemoResult> {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let names = TopicNames::new(&config.transport);
    let mut services = Vec::new();
    for service in Service::ALL {
        let runner_config = RunnerConfig {
            commit_every: 1,
            ..RunnerConfig::default()
        };
        services.push(
            pipeline::start(
                service,
                &config,
                transport.clone(),
                store.clone(),
                runner_config,
            )
            .await?,
        );
    }
    let mut settle = DrainInOrder { services };
    let mut closed = ClosedLoop::new(
        sim,
        transport,
        store.clone(),
        names,
        options.step_s as i64 * 1000,
        "llmopt-demo-console",
        Duration::ZERO,
    )
    .await?;
    if let Some(observer) = observer {
        closed.observe(observer);
    }
    let result = drive(closed, &mut settle, store.as_ref(), options, None, print).await?;
    for service in settle.services {
        service.stage.stop_stage().await?;
    }
    Ok(result)
}

/// Steps `closed` to the end of its scenario (or until `stop`), settling after each step.
pub async fn drive(
    mut closed: ClosedLoop,
    settle: &mut dyn Settle,
    store: &dyn StateStore,
    options: &DemoOptions,
    stop: Option<&Shutdown>,
    print: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<DemoResult> {
    let started = Instant::now();
    let start_ms = closed.sim().start_ms();
    let mut next_progress = start_ms + 600_000;
    settle_unless_stopped(settle, stop).await?;
    while !closed.finished() {
        if stop.is_some_and(Shutdown::is_triggered) {
            print(format!(
                "[{}] stopped: summarising what ran so far",
                clock(start_ms, closed.sim().now_ms())
            ));
            break;
        }
        closed.step().await?;
        settle_unless_stopped(settle, stop).await?;
        for event in closed.collect().await? {
            if let Some(line) = console_line(start_ms, &event) {
                print(line);
            }
        }
        let now = closed.sim().now_ms();
        if now >= next_progress {
            next_progress += 600_000;
            let firing = closed.record.firing().count();
            print(format!(
                "[{}] progress: {} calls, {} alerts fired, {} decision events, {:.0} events/s",
                clock(start_ms, now),
                closed.calls,
                firing,
                closed.record.decisions.len(),
                closed.calls as f64 / started.elapsed().as_secs_f64()
            ));
        }
        let mut due = Duration::ZERO;
        if options.speed > 0.0 {
            due = Duration::from_secs_f64((now - start_ms) as f64 / 1000.0 / options.speed);
        }
        if let Some(rate) = options.max_rate.filter(|r| *r > 0.0) {
            due = due.max(Duration::from_secs_f64(closed.calls as f64 / rate));
        }
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            pause(wait, stop).await;
        }
    }
    let truth = closed.sim().ground_truth();
    let end_ms = closed.sim().now_ms();
    // An early stop ends the comparison periods where the run ended.
    let truth: Vec<_> = truth.into_iter().filter(|t| t.start_ms < end_ms).collect();
    let mut routing = BTreeMap::new();
    for (app, route) in closed
        .sim()
        .fleet()
        .routes()
        .map(|(a, r)| (a.name.clone(), r.name.clone()))
        .collect::<Vec<_>>()
    {
        if let Some(cfg) = llmopt_actuator::read_live_config(store, &app, &route).await? {
            routing.insert((app, route), cfg);
        }
    }
    let calls = closed.calls;
    let generation = closed.generation;
    let ledgers = closed.sim().ledgers();
    let record = closed.close().await?;
    let outcome = report::evaluate(&record, &truth, start_ms, end_ms);
    Ok(DemoResult {
        outcome,
        record,
        routing,
        calls,
        elapsed: started.elapsed(),
        generation,
        ledgers,
    })
}

/// Settles the pipeline, or returns early if `stop` is triggered meanwhile (a SIGTERM must not
/// wait for services that may never settle).
async fn settle_unless_stopped(
    settle: &mut dyn Settle,
    stop: Option<&Shutdown>,
) -> anyhow::Result<()> {
    match stop {
        Some(stop) => {
            let mut stop = stop.clone();
            tokio::select! {
                settled = settle.settle() => settled,
                _ = stop.wait() => Ok(()),
            }
        }
        None => settle.settle().await,
    }
}

/// Sleeps for `wait`, or less if `stop` is triggered meanwhile.
async fn pause(wait: Duration, stop: Option<&Shutdown>) {
    match stop {
        Some(stop) => {
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait() => {}
            }
        }
        None => tokio::time::sleep(wait).await,
    }
}

/// What two runs of one scenario must agree on: alert ids, decision state changes and the
/// final routing config. The embedded demo and `llmopt loadgen` against separate services
/// report it, so a test can compare them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Ids of every alert event.
    pub alerts: std::collections::BTreeSet<String>,
    /// `id state strategy action` of every decision event.
    pub decisions: std::collections::BTreeSet<String>,
    /// `app/route vVERSION provider/model=weight,...` per route.
    pub routing: Vec<String>,
}

impl DemoResult {
    /// See [`Fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        let alerts = self.record.alerts.iter().map(|a| a.id.clone()).collect();
        let decisions = self
            .record
            .decisions
            .iter()
            .map(|d| format!("{} {:?} {:?} {}", d.id, d.state, d.strategy, d.action))
            .collect();
        let routing = self
            .routing
            .iter()
            .map(|((app, route), cfg)| {
                let targets: Vec<String> = cfg
                    .targets
                    .iter()
                    .map(|t| format!("{}/{}={:.6}", t.provider, t.model, t.weight))
                    .collect();
                format!("{app}/{route} v{} {}", cfg.version, targets.join(","))
            })
            .collect();
        Fingerprint {
            alerts,
            decisions,
            routing,
        }
    }

    /// The cost report of the run's (simulated) day, from what the console read.
    pub fn cost_report(&self) -> Option<crate::cost_report::CostReport> {
        let windows: Vec<_> = self.record.windows.values().cloned().collect();
        crate::cost_report::build(
            &windows,
            &self.record.config_changes,
            &self.record.decisions,
            crate::cost_report::ReportPeriod::Day,
        )
    }

    /// The closing report: incidents, false alerts, cost and quality, final routing, rate.
    pub fn render(&self, pipeline: &str) -> String {
        use std::fmt::Write;
        let mut out = report::render(&self.outcome, SIM_START_MS);
        if let Some(cost) = self.cost_report() {
            let _ = writeln!(
                out,
                "\nSAVINGS BY DECISION (the calls each served, priced at the routing it replaced; \
                 `llmopt report cost` on a deployment): ${:.4} of ${:.4} spent",
                cost.savings_usd, cost.spend_usd
            );
            let opt = |x: Option<f64>, digits: usize| {
                x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
            };
            for d in &cost.decisions {
                let _ = writeln!(
                    out,
                    "  {:<28} {}/{}: {} calls, ${:.4} spent, ${} saved, quality {} -> {}",
                    d.strategy.as_deref().unwrap_or("?"),
                    d.app,
                    d.route,
                    d.calls,
                    d.spend_usd,
                    opt(d.savings_usd, 4),
                    opt(d.quality_before, 3),
                    opt(d.quality_after, 3),
                );
            }
        }
        let _ = writeln!(out, "\nFINAL ROUTING");
        for ((app, route), cfg) in &self.routing {
            let targets: Vec<String> = cfg
                .targets
                .iter()
                .map(|t| format!("{}/{} {:.0}%", t.provider, t.model, t.weight * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "  {app}/{route} v{}: {}",
                cfg.version,
                targets.join(", ")
            );
        }
        let pipeline_s = self.elapsed.saturating_sub(self.generation).as_secs_f64();
        let _ = writeln!(
            out,
            "\nprocessed {} telemetry events in {:.1} s: {:.0} events/s through {pipeline} \
             ({:.0} events/s excluding the {:.1} s spent generating them)",
            self.calls,
            self.elapsed.as_secs_f64(),
            self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.calls as f64 / pipeline_s.max(1e-9),
            self.generation.as_secs_f64(),
        );
        out
    }
}
