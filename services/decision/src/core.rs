//! The decision core: windows, anomalies, config changes and decision events in; decisions (and
//! quantization jobs) out. It runs the strategies, enforces the safety limits and owns the
//! lifecycle of every decision it makes.

use std::collections::{BTreeMap, BTreeSet};

use llmopt_events::{
    Anomaly, AnyEvent, ChangeKind, ConfigChange, Decision as DecisionEvent, DecisionState,
    Evidence, RouteTarget, Strategy, WindowAggregate,
};
use llmopt_routing::{
    decision_step, targets_to_param, weight_of, RoutingConfig, RoutingProjection, ACTION_ROLLBACK,
    PARAM_FROM_MODEL, PARAM_FROM_PROVIDER, PARAM_MODEL, PARAM_PROVIDER, PARAM_SHIFT, PARAM_TARGETS,
    PARAM_TARGET_VERSION, PARAM_WEIGHT,
};
use llmopt_runtime::{Input, Output, Processor, StateScope};
use llmopt_transport::LogicalTopic;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, DecisionConfig, Mode};
use crate::history::{History, ModelKey, WindowPoint};
use crate::lifecycle::{
    decision_id, decision_output, job_output, state_name, AppliedChange, OpenDecision, Verification,
};
use crate::strategies::failover::{self, FailbackStep, PARAM_PHASE};
use crate::strategies::rollback::{self, Watch, WatchOutcome};
use crate::strategies::router::{self, Arm, Constraints, Knobs};
use crate::strategies::tuning::{self, RouteTuning, TuningKnobs};
use crate::strategies::{canary, quantize, Proposal, RouteView};

/// (app, route).
type RouteId = (String, String);

/// A decision snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("decision snapshot: {0}")]
pub struct SnapshotError(String);

/// (app, route, provider, model).
type SeriesId = (String, String, String, String);

/// Anomalies kept per (app, route, provider, model) for `caused_by`.
const ANOMALIES_KEPT: usize = 16;

/// Param of a failover or fail-back step whose verification a later failover cut short.
pub const PARAM_SUPERSEDED_BY: &str = "superseded_by";

/// Longest a published rollback holds back new proposals on its route while its change has
/// not arrived (event time).
const ROLLBACK_PENDING_MAX_MS: i64 = 120_000;

/// Shares below this are rounding, not traffic.
const SHARE_EPSILON: f64 = 1e-9;

/// A provider/model a failover took a route's traffic from: a circuit breaker's open circuit,
/// closed once fail-back has returned all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Circuit {
    /// The model the failover put the traffic on (fail-back takes it from there, or from
    /// wherever that model's own failover put it).
    holder: ModelKey,
    /// Share of the route still owed back.
    owed: f64,
    /// Event time of the first failover away: the oldest circuit fails back first.
    opened_at: i64,
    /// Event time from which a probe may start.
    probe_at: i64,
    /// A probe held: the rest returns in steps, without waiting for `probe_at`.
    holding: bool,
}

/// The decision service's deterministic core.
///
/// Time is the maximum `window_end` seen; nothing reads the wall clock, so replaying the same
/// inputs yields the same decisions with the same ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// Not part of a snapshot: a restored core runs with the configuration it is given.
    #[serde(skip)]
    config: DecisionConfig,
    #[serde(skip)]
    canary_schedule: Vec<f64>,
    history: History,
    routing: RoutingProjection,
    /// Event time of the last change per route (cooldown).
    last_change: BTreeMap<RouteId, i64>,
    open: BTreeMap<String, OpenDecision>,
    /// Every decision id ever created: one decision per id, and our own config changes are
    /// never mistaken for someone else's.
    used_ids: BTreeSet<String>,
    /// The latest outside change per route awaiting its regression check.
    watches: BTreeMap<RouteId, Watch>,
    /// Self-hosted (provider, model) already requested for quantization.
    quantize_requested: BTreeSet<(String, String)>,
    /// (app, route, provider, model) canaries already started.
    canaried: BTreeSet<SeriesId>,
    /// Recent anomalies: (event time, id).
    anomalies: BTreeMap<SeriesId, Vec<(i64, String)>>,
    /// Open circuits per route: models failed away from, owed traffic back.
    #[serde(default)]
    circuits: BTreeMap<RouteId, BTreeMap<ModelKey, Circuit>>,
    /// Per route, models the router's quality guard took traffic from, with the time: their
    /// windows before it no longer count, so the model is learned again (explored) before it
    /// gets traffic back.
    #[serde(default)]
    forgotten: BTreeMap<RouteId, BTreeMap<ModelKey, i64>>,
    /// The parameter tuner's measurements per route.
    #[serde(default)]
    tuning: BTreeMap<RouteId, RouteTuning>,
    /// Per route, a rollback published but not yet applied (decision id, event time): nothing
    /// new is proposed on the route until its config change arrives, so a proposal is never
    /// built on targets the rollback is about to replace.
    #[serde(default)]
    rollbacks_pending: BTreeMap<RouteId, (String, i64)>,
    now: Option<i64>,
}

impl Decision {
    /// A core with `config`, which must be valid.
    pub fn new(config: DecisionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            canary_schedule: config.canary_schedule(),
            history: History::new(config.history_windows),
            config,
            routing: RoutingProjection::new(),
            last_change: BTreeMap::new(),
            open: BTreeMap::new(),
            used_ids: BTreeSet::new(),
            watches: BTreeMap::new(),
            quantize_requested: BTreeSet::new(),
            canaried: BTreeSet::new(),
            anomalies: BTreeMap::new(),
            circuits: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            tuning: BTreeMap::new(),
            rollbacks_pending: BTreeMap::new(),
            now: None,
        })
    }

    /// Everything the core learned from its inputs (configuration excluded), as CBOR: the
    /// state maps are keyed by tuples, which JSON cannot express.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).map_err(|e| SnapshotError(e.to_string()))?;
        Ok(out)
    }

    /// Replaces what the core learned by a [`Decision::snapshot`], keeping its configuration.
    /// On error the current state is kept.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut restored: Decision =
            ciborium::from_reader(bytes).map_err(|e| SnapshotError(e.to_string()))?;
        restored.config = self.config.clone();
        restored.canary_schedule = self.canary_schedule.clone();
        restored.history.set_limit(self.config.history_windows);
        *self = restored;
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    /// Event time of the core: the maximum window end seen.
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// Decisions not yet in a terminal state, as last published.
    pub fn open_decisions(&self) -> impl Iterator<Item = &DecisionEvent> {
        self.open.values().map(|o| &o.event)
    }

    /// One open decision by id.
    pub fn open_decision(&self, id: &str) -> Option<&DecisionEvent> {
        self.open.get(id).map(|o| &o.event)
    }

    /// The routing config of a route as the core knows it from `config.changes`.
    pub fn routing_config(&self, app: &str, route: &str) -> Option<&RoutingConfig> {
        self.routing.config(app, route)
    }

    fn view<'a>(&'a self, route: &'a RouteId, trigger_time: i64) -> Option<RouteView<'a>> {
        let history = self.history.route(&route.0, &route.1)?;
        let cfg = self.routing.config(&route.0, &route.1);
        Some(RouteView {
            app: &route.0,
            route: &route.1,
            history,
            targets: cfg.map_or_else(|| history.latest_shares(), |c| c.targets.clone()),
            version: cfg.map(|c| c.version),
            config: &self.config,
            policy: self.config.policy(&route.0, &route.1),
            trigger_time,
        })
    }

    /// Whether a rollback on `route` was published and its change has not arrived yet (for at
    /// most [`ROLLBACK_PENDING_MAX_MS`]: a rollback the actuator cannot apply holds back the
    /// route's failovers for two windows, not for a whole cooldown).
    fn rollback_pending(&self, route: &RouteId, t: i64) -> bool {
        self.rollbacks_pending
            .get(route)
            .is_some_and(|(_, at)| t < at.saturating_add(ROLLBACK_PENDING_MAX_MS))
    }

    fn cooldown_active(&self, route: &RouteId, t: i64) -> bool {
        self.last_change
            .get(route)
            .is_some_and(|c| t < c.saturating_add(self.config.limits.cooldown_ms))
    }

    fn open_routing_on(&self, route: &RouteId) -> impl Iterator<Item = &OpenDecision> {
        let route = route.clone();
        self.open.values().filter(move |o| {
            o.changes_routing() && o.event.app == route.0 && o.event.route == route.1
        })
    }

    /// The route's routing decisions whose change is applied and being verified.
    fn verifying_on(&self, route: &RouteId) -> impl Iterator<Item = &OpenDecision> {
        self.open_routing_on(route)
            .filter(|o| o.state() == DecisionState::Verifying)
    }

    fn open_canaries(&self) -> usize {
        self.open
            .values()
            .filter(|o| o.event.strategy == Strategy::CheaperModelCanary)
            .count()
    }

    fn close(&mut self, id: &str) {
        if let Some(od) = self.open.remove(id) {
            if od.event.strategy == Strategy::Failover {
                self.settle_circuit(&od);
            }
            if od.state() == DecisionState::Expired {
                // Never acted on: the strategy may propose again.
                let e = &od.event;
                match e.strategy {
                    Strategy::CheaperModelCanary => {
                        let p = e.params.get(PARAM_PROVIDER);
                        let m = e.params.get(PARAM_MODEL);
                        if let (Some(p), Some(m)) = (p, m) {
                            self.canaried.remove(&(
                                e.app.clone(),
                                e.route.clone(),
                                p.clone(),
                                m.clone(),
                            ));
                        }
                    }
                    Strategy::QuantizationRequest => {
                        let p = e.params.get(PARAM_PROVIDER);
                        let m = e.params.get(PARAM_MODEL);
                        if let (Some(p), Some(m)) = (p, m) {
                            self.quantize_requested.remove(&(p.clone(), m.clone()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Circuits after a failover decision ended: a fail-back step that held brings the circuit
    /// closer to closed (and lets the next step go at once); one that did not (rolled back,
    /// rejected, expired) leaves it open for another `probe_after_ms`; a failover away that
    /// was rolled back owes nothing any more.
    fn settle_circuit(&mut self, od: &OpenDecision) {
        let e = &od.event;
        let param = |k: &str| e.params.get(k).cloned().unwrap_or_default();
        let shift: f64 = param(PARAM_SHIFT).parse().unwrap_or(0.0);
        let route = (e.app.clone(), e.route.clone());
        let failback = e.params.contains_key(PARAM_PHASE);
        let model = if failback {
            (param(PARAM_PROVIDER), param(PARAM_MODEL))
        } else {
            (param(PARAM_FROM_PROVIDER), param(PARAM_FROM_MODEL))
        };
        let now = self.now.unwrap_or(e.event_time);
        let probe_after = self.config.failback.probe_after_ms;
        let Some(circuits) = self.circuits.get_mut(&route) else {
            return;
        };
        let Some(circuit) = circuits.get_mut(&model) else {
            return;
        };
        let superseded = e.params.contains_key(PARAM_SUPERSEDED_BY);
        match (failback, od.state()) {
            (true, DecisionState::Succeeded) if superseded => {
                circuit.owed -= shift;
                circuit.holding = false;
                circuit.probe_at = now.saturating_add(probe_after);
            }
            (true, DecisionState::Succeeded) => {
                circuit.owed -= shift;
                circuit.holding = true;
            }
            (true, _) => {
                circuit.holding = false;
                circuit.probe_at = now.saturating_add(probe_after);
            }
            (false, DecisionState::RolledBack) if od.first_change.is_some() => {
                circuit.owed -= shift;
            }
            (false, _) => {}
        }
        if circuit.owed <= SHARE_EPSILON {
            circuits.remove(&model);
        }
        if circuits.is_empty() {
            self.circuits.remove(&route);
        }
    }

    /// A failover away from `from` was applied at `t`: its circuit opens (or owes more).
    fn open_circuit(&mut self, route: &RouteId, from: ModelKey, to: ModelKey, shift: f64, t: i64) {
        let probe_at = t.saturating_add(self.config.failback.probe_after_ms);
        let circuit = self
            .circuits
            .entry(route.clone())
            .or_default()
            .entry(from)
            .or_insert(Circuit {
                holder: to.clone(),
                owed: 0.0,
                opened_at: t,
                probe_at,
                holding: false,
            });
        circuit.holder = to;
        circuit.owed = (circuit.owed + shift).min(1.0);
        circuit.probe_at = probe_at;
        circuit.holding = false;
    }

    /// Turns a proposal into a decision: PROPOSED or APPROVED by mode.
    fn create(&mut self, proposal: Proposal, targets_at_creation: Vec<RouteTarget>) -> Vec<Output> {
        let id = decision_id(
            proposal.strategy,
            &proposal.app,
            &proposal.route,
            proposal.trigger_time,
        );
        if !self.used_ids.insert(id.clone()) {
            return Vec::new();
        }
        let state = match self.config.mode {
            Mode::Auto => DecisionState::Approved,
            Mode::Propose => DecisionState::Proposed,
        };
        let mut params = proposal.params;
        let job = proposal.job.map(|mut j| {
            j.job_id = format!("{id}/job");
            j.decision_id = Some(id.clone());
            params.insert("job_id".to_string(), j.job_id.clone());
            j
        });
        let schedule = if proposal.strategy == Strategy::CheaperModelCanary {
            let first = params
                .get(PARAM_WEIGHT)
                .and_then(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0);
            self.canary_schedule
                .iter()
                .copied()
                .filter(|w| *w >= first - 1e-9)
                .collect()
        } else {
            Vec::new()
        };
        let verification = match (
            proposal.strategy,
            params.get(PARAM_FROM_PROVIDER),
            params.get(PARAM_FROM_MODEL),
            params.get(PARAM_PROVIDER),
            params.get(PARAM_MODEL),
        ) {
            (Strategy::Failover, Some(fp), Some(fm), Some(tp), Some(tm)) => {
                Verification::MovedTraffic {
                    from: (fp.clone(), fm.clone()),
                    to: (tp.clone(), tm.clone()),
                }
            }
            (Strategy::Experiment, ..)
                if params.get(router::PARAM_PHASE).map(String::as_str)
                    == Some(router::PHASE_GUARD) =>
            {
                Verification::Applied
            }
            (Strategy::Experiment | Strategy::ParameterTuning, ..) => Verification::Constraints {
                quality_floor: proposal.evidence.metrics.get("quality_floor").copied(),
                latency_slo_p95_ms: self
                    .config
                    .policy(&proposal.app, &proposal.route)
                    .and_then(|p| p.latency_slo_p95_ms),
                trial: proposal.strategy == Strategy::ParameterTuning
                    && params.get(tuning::PARAM_PHASE).map(String::as_str)
                        == Some(tuning::PHASE_TRIAL),
            },
            _ => Verification::Route,
        };
        let event = DecisionEvent {
            id: id.clone(),
            event_time: proposal.trigger_time,
            strategy: proposal.strategy,
            state,
            mode: self.config.mode.as_event_mode(),
            app: proposal.app,
            route: proposal.route,
            action: proposal.action,
            params,
            reason: proposal.reason,
            evidence: proposal.evidence,
            caused_by: proposal.caused_by,
        };
        let mut od = OpenDecision {
            event,
            created_at: proposal.trigger_time,
            seen: BTreeSet::from([(state_name(state).to_string(), 0)]),
            step: 0,
            schedule,
            first_change: None,
            verifying_since: None,
            targets_at_creation,
            job,
            verification,
        };
        let mut out = vec![decision_output(&od.event, 0)];
        let mut closed = false;
        if state == DecisionState::Approved {
            closed = after_approval(&mut od, proposal.trigger_time, &mut out);
        }
        if !closed {
            self.open.insert(id, od);
        }
        out
    }

    fn on_window(&mut self, w: &WindowAggregate) -> Vec<Output> {
        if !self.history.insert(w) {
            return Vec::new();
        }
        let t = w.window_end;
        let now = self.now.map_or(t, |n| n.max(t));
        self.now = Some(now);
        let route = (w.app.clone(), w.route.clone());
        let mut out = self.expire(now);
        out.extend(self.progress_verifications(&route, t));
        out.extend(self.evaluate_watch(&route, t));
        self.count_for_tuning(&route, w);
        if self.rollback_pending(&route, t) {
            return out;
        }
        out.extend(self.try_failover(&route, w, t));
        out.extend(self.try_failback(&route, t, (w.window_end - w.window_start).max(0)));
        out.extend(self.try_quantize(&route, &w.provider, &w.model, t));
        out.extend(self.try_canary(&route, t));
        out.extend(self.try_route(&route, t, (w.window_end - w.window_start).max(0)));
        out.extend(self.try_tune(&route, t, (w.window_end - w.window_start).max(0)));
        out
    }

    /// The parameter arms of a route, when it is tuned.
    fn arms(&self, route: &RouteId) -> Option<&Vec<BTreeMap<String, String>>> {
        let policy = self.config.policy(&route.0, &route.1)?;
        (self.config.tuning.enabled && !policy.parameter_arms.is_empty())
            .then_some(&policy.parameter_arms)
    }

    /// Counts a model's window for the arm that was live for all of it.
    fn count_for_tuning(&mut self, route: &RouteId, w: &WindowAggregate) {
        let Some(arms) = self.arms(route) else {
            return;
        };
        let Some(cfg) = self.routing.config(&route.0, &route.1) else {
            return;
        };
        let Some(live) = tuning::live_arm(arms, &cfg.params) else {
            return;
        };
        let state = self.tuning.entry(route.clone()).or_default();
        if w.window_start <= state.params_since
            || w.window_kind != llmopt_events::WindowKind::Tumbling
        {
            return;
        }
        state.window_arms.insert(w.window_start, live);
        let kept_from = w.window_start - 3 * 3_600_000;
        state.window_arms.retain(|start, _| *start >= kept_from);
        if state.counted.contains_key(&w.window_id) {
            return;
        }
        state.counted.insert(w.window_id.clone(), w.window_end);
        // Revisions of windows older than an hour are not expected: forget their ids.
        let horizon = w.window_end - 3_600_000;
        state.counted.retain(|_, end| *end >= horizon);
        state
            .stats
            .entry(live)
            .or_default()
            .entry((w.provider.clone(), w.model.clone()))
            .or_default()
            .add(&WindowPoint::from_window(w));
    }

    /// The parameter tuner: a trial of an arm not measured yet, or a switch to the arm the
    /// posterior prefers; after the cooldown, with nothing else open on the route.
    fn try_tune(&mut self, route: &RouteId, t: i64, window_ms: i64) -> Vec<Output> {
        let Some(arms) = self.arms(route).cloned() else {
            return Vec::new();
        };
        if self.circuits.contains_key(route) || self.open_routing_on(route).next().is_some() {
            return Vec::new();
        }
        let cooldown = self.cooldown_active(route, t);
        let Some(cfg) = self.routing.config(&route.0, &route.1) else {
            return Vec::new();
        };
        let Some(live) = tuning::live_arm(&arms, &cfg.params) else {
            return Vec::new();
        };
        let Some(state) = self.tuning.get(route) else {
            return Vec::new();
        };
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        let Some(policy) = view.policy else {
            return Vec::new();
        };
        let floor = Self::quality_floor(policy, &self.router_arms(&view, t, window_ms));
        let tc = &self.config.tuning;
        let knobs = TuningKnobs {
            min_scored: tc.min_scored_calls,
            quality_margin: tc.quality_margin,
            switch_probability: tc.switch_probability,
            draws: tc.draws,
            seed: router::draw_seed(self.config.router.seed, &route.0, &route.1, t),
            now: t,
            cooldown,
            settled: t
                >= state
                    .targets_since
                    .saturating_add(window_ms.saturating_mul(i64::from(tc.settle_windows))),
        };
        let Some(p) = tuning::evaluate(&view, &arms, live, state, floor, &knobs) else {
            return Vec::new();
        };
        let targets = view.targets.clone();
        self.create(p, targets)
    }

    /// Whether the router owns the route's optimisation (it lists allowed models).
    fn routed(&self, route: &RouteId) -> bool {
        self.config.router.enabled
            && self
                .config
                .policy(&route.0, &route.1)
                .is_some_and(|p| !p.models.is_empty())
    }

    /// The router's arms of a route: its allowed models, its cheaper candidate and its current
    /// targets, each with its recent windows on the route.
    fn router_arms(&self, view: &RouteView<'_>, t: i64, window_ms: i64) -> Vec<Arm> {
        let Some(policy) = view.policy else {
            return Vec::new();
        };
        let mut keys: Vec<(ModelKey, f64)> = Vec::new();
        let mut add = |key: ModelKey, cap: f64| {
            if !keys.iter().any(|(k, _)| *k == key) {
                keys.push((key, cap));
            }
        };
        for t in view.targets.iter().filter(|t| t.weight > SHARE_EPSILON) {
            add((t.provider.clone(), t.model.clone()), 1.0);
        }
        for m in &policy.models {
            add((m.provider.clone(), m.model.clone()), m.max_share);
        }
        if let Some(c) = &policy.cheaper {
            add((c.provider.clone(), c.model.clone()), 1.0);
        }
        // A listed model's cap applies even when it is also a current target.
        for (key, cap) in &mut keys {
            if let Some(m) = policy
                .models
                .iter()
                .find(|m| m.provider == key.0 && m.model == key.1)
            {
                *cap = m.max_share;
            }
        }
        let cfg = &self.config;
        let since = t - window_ms * cfg.failover_windows as i64;
        let route = (view.app.to_string(), view.route.to_string());
        let open = self.circuits.get(&route);
        let forgotten = self.forgotten.get(&route);
        // Windows under other params (a tuner's change) say little about the models now: a
        // tuned route's models are judged by the windows of the live arm, any other route's
        // by the windows since its params last changed.
        let tuning = self.tuning.get(&route);
        let live_arm = self.arms(&route).and_then(|arms| {
            let cfg = self.routing.config(&route.0, &route.1)?;
            tuning::live_arm(arms, &cfg.params)
        });
        let under_live_params = |start: i64| match (tuning, live_arm) {
            (Some(s), Some(arm)) => s.served_under(arm, start),
            (Some(s), None) => start > s.params_since,
            (None, _) => true,
        };
        keys.into_iter()
            .map(|(key, cap)| {
                let forgot = forgotten.and_then(|f| f.get(&key)).copied();
                let points: Vec<&WindowPoint> = view
                    .history
                    .last_points(&key.0, &key.1, cfg.router.windows)
                    .into_iter()
                    .filter(|p| forgot.is_none_or(|f| p.start >= f) && under_live_params(p.start))
                    .collect();
                let mut arm = Arm::from_points(
                    key.clone(),
                    weight_of(&view.targets, &key.0, &key.1),
                    cap,
                    cfg.error_slo.for_model(&key.0, &key.1),
                    &points,
                    cfg.router.guard_windows,
                );
                let fleet = self
                    .history
                    .model_points(&key.0, &key.1, cfg.failover_windows, since);
                arm.excluded = open.is_some_and(|c| c.contains_key(&key))
                    || failover::breach(&fleet, &key.0, &key.1, cfg).is_some();
                arm.explorable =
                    forgot.is_none_or(|a| t >= a.saturating_add(cfg.router.reexplore_after_ms));
                arm
            })
            .collect()
    }

    /// The route's quality floor: configured, or the incumbents' mean quality less the cheaper
    /// candidate's margin (the two-model canary's non-inferiority bound).
    fn quality_floor(policy: &crate::config::RoutePolicy, arms: &[Arm]) -> Option<f64> {
        if policy.quality_floor.is_some() {
            return policy.quality_floor;
        }
        let cheaper = policy.cheaper.as_ref()?;
        let incumbents: Vec<&Arm> = arms
            .iter()
            .filter(|a| a.weight > SHARE_EPSILON)
            .filter(|a| a.key.0 != cheaper.provider || a.key.1 != cheaper.model)
            .collect();
        let scored: i64 = incumbents.iter().map(|a| a.scored).sum();
        let sum: f64 = incumbents
            .iter()
            .filter_map(|a| a.quality_mean.map(|q| q * a.scored as f64))
            .sum();
        (scored > 0).then(|| sum / scored as f64 - cheaper.quality_margin)
    }

    /// The constrained Thompson sampling router (see [`router`]): a quality-guard step at once
    /// when a serving model falls below the floor, otherwise (after the cooldown, within the
    /// concurrency limit) one step towards the posterior's targets.
    fn try_route(&mut self, route: &RouteId, t: i64, window_ms: i64) -> Vec<Output> {
        if !self.routed(route) || self.circuits.contains_key(route) {
            return Vec::new();
        }
        // Guard steps already applied do not hold the next one back (an evacuation goes on
        // at the next window); anything else open on the route does.
        let guard_step = |o: &OpenDecision| {
            o.event.strategy == Strategy::Experiment
                && o.state() == DecisionState::Verifying
                && o.event.params.get(router::PARAM_PHASE).map(String::as_str)
                    == Some(router::PHASE_GUARD)
        };
        let open: Vec<bool> = self.open_routing_on(route).map(guard_step).collect();
        let guarding = !open.is_empty() && open.iter().all(|g| *g);
        if !open.is_empty() && !guarding {
            return Vec::new();
        }
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        let Some(policy) = view.policy else {
            return Vec::new();
        };
        let arms = self.router_arms(&view, t, window_ms);
        let floor = Self::quality_floor(policy, &arms);
        let c = Constraints::of(policy, floor);
        let rc = &self.config.router;
        let knobs = Knobs {
            draws: rc.draws,
            min_scored_calls: rc.min_scored_calls,
            explore_share: rc.explore_share,
            min_step: rc.min_step,
            max_shift: self.config.limits.max_traffic_shift,
            alpha: self.config.alpha,
            floor_margin: rc.floor_margin,
            seed: router::draw_seed(rc.seed, &route.0, &route.1, t),
        };
        let caused_by = |arms: &[Arm], idx: &[usize]| -> Vec<String> {
            idx.iter()
                .flat_map(|&i| {
                    let (p, m) = &arms[i].key;
                    view.history
                        .last_points(p, m, 3)
                        .into_iter()
                        .map(|w| w.event_id.clone())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut forget = None;
        // A guard step needs somewhere known to go; until then the route explores.
        let guard = router::guard(&arms, floor, &knobs).and_then(|(from, test)| {
            router::guard_destination(&arms, from, &c, &knobs).map(|to| (from, to, test))
        });
        let proposal = if let Some((from, to, test)) = guard {
            let probs = router::win_probabilities(&arms, &c, &knobs, &[]);
            // Undoing harm waits neither for the cooldown nor for the concurrency limit.
            let room = arms[to].max_share - arms[to].weight;
            let shift = arms[from].weight.min(knobs.max_shift).min(room);
            // A chosen model that met the floor before its last windows regressed: it is
            // learned again before it gets traffic back. One that only had its exploration
            // share, or that missed the floor all along, keeps what was learned (it is known
            // bad until its windows age out of the history).
            let regressed = arms[from]
                .earlier_quality
                .zip(floor)
                .is_some_and(|(q, f)| q >= f);
            if arms[from].weight > knobs.explore_share + SHARE_EPSILON && regressed {
                forget = Some(arms[from].key.clone());
            }
            router::proposal(
                &view,
                &arms,
                &probs,
                &c,
                (from, to, shift),
                router::PHASE_GUARD,
                Some(test),
                caused_by(&arms, &[from, to]),
            )
        } else if guarding {
            return Vec::new();
        } else {
            let busy = self
                .open
                .values()
                .filter(|o| o.event.strategy == Strategy::Experiment)
                .count()
                >= rc.max_concurrent;
            if busy || self.cooldown_active(route, t) {
                return Vec::new();
            }
            let Some((targets, probs)) = router::targets(&arms, &c, &knobs) else {
                return Vec::new();
            };
            let Some((from, to, shift)) = router::step(&arms, &targets, &knobs) else {
                return Vec::new();
            };
            let phase = if arms[to].scored < knobs.min_scored_calls {
                router::PHASE_EXPLORE
            } else {
                router::PHASE_EXPLOIT
            };
            router::proposal(
                &view,
                &arms,
                &probs,
                &c,
                (from, to, shift),
                phase,
                None,
                caused_by(&arms, &[from, to]),
            )
        };
        let targets = view.targets.clone();
        let Some(p) = proposal else {
            return Vec::new();
        };
        if let Some(model) = forget {
            self.forgotten
                .entry(route.clone())
                .or_default()
                .insert(model, t);
        }
        self.create(p, targets)
    }

    /// PROPOSED decisions older than the TTL expire.
    fn expire(&mut self, now: i64) -> Vec<Output> {
        let ttl = self.config.proposal_ttl_ms;
        let ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| {
                o.state() == DecisionState::Proposed && o.created_at.saturating_add(ttl) <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(od) = self.open.get_mut(&id) {
                out.push(od.transition(
                    DecisionState::Expired,
                    now,
                    Some(format!("not approved within {} ms", ttl)),
                    None,
                    None,
                ));
            }
            self.close(&id);
        }
        out
    }

    /// Verifies decisions of `route` whose evaluation windows are complete: SUCCEEDED, next
    /// canary step (APPROVED again) or ROLLED_BACK.
    fn progress_verifications(&mut self, route: &RouteId, t: i64) -> Vec<Output> {
        let ids: Vec<String> = self
            .verifying_on(route)
            .map(|o| o.event.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let Some(od) = self.open.get(&id) else {
                continue;
            };
            let (Some(since), Some(first)) = (od.verifying_since, od.first_change.clone()) else {
                continue;
            };
            let failback = od.event.strategy == Strategy::Failover
                && od.event.params.contains_key(PARAM_PHASE);
            let n = if failback {
                if od.event.params.get(PARAM_PHASE).map(String::as_str)
                    == Some(failover::PHASE_PROBE)
                {
                    self.config.failback.probe_windows
                } else {
                    self.config.failback.step_windows
                }
            } else if od.schedule.is_empty() {
                self.config.evaluation_windows
            } else {
                self.config.canary.windows_per_step
            };
            let Some(hist) = self.history.route(&route.0, &route.1) else {
                continue;
            };
            // A step judged by the route's constraints is rolled back as soon as two windows
            // show it under them (the quality guard of router and tuner steps), a fail-back
            // step as soon as one window shows the model still failing (a circuit breaker's
            // half-open trial); they succeed only after all their windows.
            let early = match od.verification {
                Verification::Constraints { .. } => Some(2),
                Verification::MovedTraffic { .. } if failback => Some(1),
                _ => None,
            }
            .filter(|e| *e < n);
            // A parameter trial is judged at every window, the newest included as soon as
            // every model carrying the route has reported it; the window starting at the
            // change is left out, as in the tuner's counting (the change lands a little after
            // its event time, so that window is mostly served under the old params).
            let trial_given_up = match &od.verification {
                Verification::Constraints {
                    quality_floor: Some(floor),
                    trial: true,
                    ..
                } => {
                    let carrying: Vec<ModelKey> = self
                        .routing
                        .config(&route.0, &route.1)
                        .map(|c| {
                            c.targets
                                .iter()
                                .filter(|t| t.weight > 0.05)
                                .map(|t| (t.provider.clone(), t.model.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let judged = hist.reported_windows_after(since, &carrying);
                    rollback::trial_under_floor(&judged, *floor, 2)
                }
                _ => None,
            };
            let windows = match hist.windows_after(since, n) {
                Some(after) => Some((after, true)),
                None => {
                    // Every window closed so far, once there are enough for an early verdict.
                    let closed = hist.closed_windows_since(since);
                    early
                        .filter(|e| closed >= *e)
                        .and_then(|_| hist.windows_after(since, closed))
                        .map(|after| (after, false))
                }
            };
            let (after, complete) = match windows {
                Some(w) => w,
                None if trial_given_up.is_some() => (Vec::new(), false),
                None => continue,
            };
            let (before, after) = match &od.verification {
                Verification::Route | Verification::Constraints { .. } | Verification::Applied => (
                    hist.windows_before(first.time, self.config.baseline_windows),
                    after,
                ),
                Verification::MovedTraffic { from, to } => (
                    hist.model_windows_before(
                        &from.0,
                        &from.1,
                        first.time,
                        self.config.failover_windows,
                    ),
                    hist.model_windows_after(&to.0, &to.1, since, after.len()),
                ),
            };
            let cmp = match &od.verification {
                _ if trial_given_up.is_some() => trial_given_up,
                // A fail-back step asks one thing: is the model back within its SLO? Judged on
                // its own calls since the change (not against the holder, which may be failing
                // too), and not before it has had enough calls to tell.
                Verification::MovedTraffic { to, .. } if failback => {
                    let closed = hist.closed_windows_since(since);
                    let calls = hist.model_windows_after(&to.0, &to.1, since, closed);
                    let slo = self.config.error_slo.for_model(&to.0, &to.1);
                    match rollback::failback_check(&calls, slo, self.config.alpha) {
                        None if closed < 3 * n => continue,
                        c => c,
                    }
                }
                Verification::Constraints {
                    quality_floor,
                    latency_slo_p95_ms,
                    ..
                } => rollback::compare_constraints(
                    &before,
                    &after,
                    &self.config,
                    *quality_floor,
                    *latency_slo_p95_ms,
                ),
                _ => rollback::compare(&before, &after, &self.config),
            };
            let Some(od) = self.open.get_mut(&id) else {
                continue;
            };
            if !complete && !cmp.as_ref().is_some_and(|c| c.worse) {
                continue;
            }
            match cmp {
                Some(c) if c.worse => {
                    let mut params = od.step_params();
                    let target = first.previous_version.unwrap_or(0);
                    params.insert(PARAM_TARGET_VERSION.to_string(), target.to_string());
                    let targets = first
                        .previous_targets
                        .clone()
                        .unwrap_or_else(|| od.targets_at_creation.clone());
                    params.insert(PARAM_TARGETS.to_string(), targets_to_param(&targets));
                    od.event.action = ACTION_ROLLBACK.to_string();
                    if matches!(
                        od.verification,
                        Verification::Constraints { trial: true, .. }
                    ) {
                        let arms = self
                            .config
                            .policy(&route.0, &route.1)
                            .map(|p| &p.parameter_arms);
                        if let Some(arm) =
                            arms.and_then(|a| tuning::arm_of_decision(a, &od.event.params))
                        {
                            self.tuning.entry(route.clone()).or_default().abandon(
                                arm,
                                t,
                                self.config.tuning.retry_after_ms,
                            );
                        }
                    }
                    self.rollbacks_pending
                        .insert(route.clone(), (id.clone(), t));
                    out.push(od.transition(
                        DecisionState::RolledBack,
                        t,
                        Some(format!(
                            "verification failed at step {}: {}; rolling back to v{target}",
                            od.step, c.summary
                        )),
                        Some(c.evidence),
                        Some(params),
                    ));
                    self.close(&id);
                }
                other => {
                    let (summary, evidence) = match other {
                        Some(c) => (c.summary, c.evidence),
                        None => ("insufficient data to compare".to_string(), no_evidence()),
                    };
                    if !od.schedule.is_empty() && (od.step as usize + 1) < od.schedule.len() {
                        od.step += 1;
                        od.verifying_since = None;
                        let params = od.step_params();
                        let weight = params
                            .get(llmopt_routing::PARAM_WEIGHT)
                            .cloned()
                            .unwrap_or_default();
                        out.push(od.transition(
                            DecisionState::Approved,
                            t,
                            Some(format!(
                                "step {} verified ({summary}); canary step {} at weight {weight}",
                                od.step - 1,
                                od.step
                            )),
                            Some(evidence),
                            Some(params),
                        ));
                    } else {
                        out.push(od.transition(
                            DecisionState::Succeeded,
                            t,
                            Some(format!("verified: {summary}")),
                            Some(evidence),
                            None,
                        ));
                        self.close(&id);
                    }
                }
            }
        }
        out
    }

    /// Regression check of the route's last outside change.
    fn evaluate_watch(&mut self, route: &RouteId, t: i64) -> Vec<Output> {
        let Some(watch) = self.watches.get(route).cloned() else {
            return Vec::new();
        };
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        let targets = view.targets.clone();
        let outcome = rollback::evaluate(&view, &watch);
        match outcome {
            WatchOutcome::Pending => Vec::new(),
            WatchOutcome::Fine => {
                self.watches.remove(route);
                Vec::new()
            }
            WatchOutcome::Rollback(p) => {
                self.watches.remove(route);
                // Rollbacks skip the cooldown; they only wait for changes already in flight.
                let blocked = self
                    .open_routing_on(route)
                    .any(|o| o.in_flight() || o.event.strategy == Strategy::RegressionRollback);
                if blocked {
                    Vec::new()
                } else {
                    self.create(*p, targets)
                }
            }
        }
    }

    fn try_failover(&mut self, route: &RouteId, w: &WindowAggregate, t: i64) -> Vec<Output> {
        // A model breaching its SLO leaves the route without waiting for the cooldown or for
        // the verification of earlier failover and fail-back steps (a fallback failing in turn
        // is left at once; those steps' changes stay, their verification is cut short). It
        // waits for changes not applied yet, for other strategies' verification, and for a
        // fail-back step onto this very model, whose own verification takes it back.
        let model = (w.provider.clone(), w.model.clone());
        let onto_this_model = |o: &OpenDecision| {
            o.event.params.contains_key(PARAM_PHASE)
                && o.event.params.get(PARAM_PROVIDER) == Some(&model.0)
                && o.event.params.get(PARAM_MODEL) == Some(&model.1)
        };
        let blocked = self.open_routing_on(route).any(|o| {
            o.event.strategy != Strategy::Failover
                || o.state() != DecisionState::Verifying
                || onto_this_model(o)
        });
        if blocked {
            return Vec::new();
        }
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        let targets = view.targets.clone();
        // Never onto a model this route failed away from and has not taken back, nor onto one
        // that breaches its SLO wherever it still serves.
        let mut avoid: Vec<ModelKey> = self
            .circuits
            .get(route)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        let since =
            t - (w.window_end - w.window_start).max(0) * self.config.failover_windows as i64;
        if let Some(policy) = view.policy {
            for m in policy.fallback_chain() {
                let fleet = self.history.model_points(
                    &m.provider,
                    &m.model,
                    self.config.failover_windows,
                    since,
                );
                if failover::breach(&fleet, &m.provider, &m.model, &self.config).is_some() {
                    avoid.push((m.provider.clone(), m.model.clone()));
                }
            }
        }
        let Some(mut p) = failover::evaluate(&view, &w.provider, &w.model, &avoid) else {
            return Vec::new();
        };
        // Anomalies the detector raised on this provider/model over the tested windows.
        let span = (w.window_end - w.window_start).max(0) * self.config.failover_windows as i64;
        let key = (
            w.app.clone(),
            w.route.clone(),
            w.provider.clone(),
            w.model.clone(),
        );
        if let Some(list) = self.anomalies.get(&key) {
            let recent: Vec<String> = list
                .iter()
                .filter(|(at, _)| *at > t - span && *at <= t)
                .map(|(_, id)| id.clone())
                .collect();
            p.evidence
                .metrics
                .insert("anomalies".to_string(), recent.len() as f64);
            p.caused_by.extend(recent);
        }
        let mut out = self.supersede_failover_steps(route, &model, t);
        out.extend(self.create(p, targets));
        out
    }

    /// Ends the verification of the route's failover and fail-back steps that concern other
    /// models than `failing` (which is failing over now): their changes stay, and a rollback of
    /// theirs would restore targets from before this failover. A cut-short fail-back step
    /// counts as returned but not held: the circuit waits `probe_after_ms` before the next.
    fn supersede_failover_steps(
        &mut self,
        route: &RouteId,
        failing: &ModelKey,
        t: i64,
    ) -> Vec<Output> {
        let concerns_failing = |o: &OpenDecision| {
            let p = &o.event.params;
            !p.contains_key(PARAM_PHASE)
                && p.get(PARAM_FROM_PROVIDER) == Some(&failing.0)
                && p.get(PARAM_FROM_MODEL) == Some(&failing.1)
        };
        let ids: Vec<String> = self
            .verifying_on(route)
            .filter(|o| o.event.strategy == Strategy::Failover && !concerns_failing(o))
            .map(|o| o.event.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let Some(od) = self.open.get_mut(&id) else {
                continue;
            };
            let mut params = od.event.params.clone();
            params.insert(
                PARAM_SUPERSEDED_BY.to_string(),
                format!("failover:{}/{}", failing.0, failing.1),
            );
            out.push(od.transition(
                DecisionState::Succeeded,
                t,
                Some(format!(
                    "verification cut short: {}/{} breaches its SLO and fails over; this \
                     change stays in place",
                    failing.0, failing.1
                )),
                None,
                Some(params),
            ));
            self.close(&id);
        }
        out
    }

    /// Fail-back for the route's oldest circuit that is due: a probe once `probe_after_ms`
    /// has passed (and the model does not breach where it still serves), the next step at once
    /// after a step held. Steps wait for the route's open decisions, not for the cooldown: they
    /// undo a failover, and each is verified (and rolled back) like any decision.
    fn try_failback(&mut self, route: &RouteId, t: i64, window_ms: i64) -> Vec<Output> {
        if !self.config.failback.enabled || self.open_routing_on(route).next().is_some() {
            return Vec::new();
        }
        let Some(circuits) = self.circuits.get(route) else {
            return Vec::new();
        };
        let Some((model, circuit)) = circuits
            .iter()
            .filter(|(_, c)| c.holding || t >= c.probe_at)
            .min_by_key(|(m, c)| (c.opened_at, (*m).clone()))
            .map(|(m, c)| (m.clone(), c.clone()))
        else {
            return Vec::new();
        };
        let windows = self.config.failover_windows;
        let since = t - window_ms * windows as i64;
        let fleet = self
            .history
            .model_points(&model.0, &model.1, windows, since);
        if failover::breach(&fleet, &model.0, &model.1, &self.config).is_some() {
            // Still failing for the routes that kept it: stay open.
            if let Some(c) = self.circuits.get_mut(route).and_then(|c| c.get_mut(&model)) {
                c.holding = false;
                c.probe_at = t.saturating_add(self.config.failback.probe_after_ms);
            }
            return Vec::new();
        }
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        // Where the traffic is now: the failover's fallback, or where its own failover put it.
        let mut holder = circuit.holder.clone();
        for _ in 0..circuits.len() {
            if weight_of(&view.targets, &holder.0, &holder.1) > SHARE_EPSILON {
                break;
            }
            match circuits.get(&holder) {
                Some(next) => holder = next.holder.clone(),
                None => break,
            }
        }
        let available = weight_of(&view.targets, &holder.0, &holder.1);
        if holder == model || available <= SHARE_EPSILON {
            // The traffic is no longer where failover put it (an operator moved it): nothing
            // to give back.
            if let Some(c) = self.circuits.get_mut(route) {
                c.remove(&model);
            }
            return Vec::new();
        }
        let step = if circuit.holding {
            self.config.limits.max_traffic_shift
        } else {
            self.config.failback.probe_share
        };
        let shift = step.min(circuit.owed).min(available);
        let proposal = failover::failback(
            &view,
            FailbackStep {
                to: (&model.0, &model.1),
                from: (&holder.0, &holder.1),
                shift,
                owed: circuit.owed,
                probe: !circuit.holding,
            },
            &fleet,
        );
        let targets = view.targets.clone();
        match proposal {
            Some(p) => self.create(p, targets),
            None => Vec::new(),
        }
    }

    fn try_quantize(
        &mut self,
        route: &RouteId,
        provider: &str,
        model: &str,
        t: i64,
    ) -> Vec<Output> {
        let key = (provider.to_string(), model.to_string());
        if self.quantize_requested.contains(&key) {
            return Vec::new();
        }
        let Some(target) = self
            .config
            .policy(&route.0, &route.1)
            .and_then(|p| {
                p.self_hosted
                    .iter()
                    .find(|s| s.provider == provider && s.model == model)
            })
            .cloned()
        else {
            return Vec::new();
        };
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        let targets = view.targets.clone();
        let Some(p) = quantize::evaluate(&view, &target) else {
            return Vec::new();
        };
        let out = self.create(p, targets);
        if !out.is_empty() {
            self.quantize_requested.insert(key);
        }
        out
    }

    fn try_canary(&mut self, route: &RouteId, t: i64) -> Vec<Output> {
        if self.routed(route) {
            // The router treats the cheaper candidate as one more allowed model.
            return Vec::new();
        }
        let Some(cand) = self
            .config
            .policy(&route.0, &route.1)
            .and_then(|p| p.cheaper.clone())
        else {
            return Vec::new();
        };
        let key = (
            route.0.clone(),
            route.1.clone(),
            cand.provider.clone(),
            cand.model.clone(),
        );
        if self.canaried.contains(&key)
            || self.open_routing_on(route).next().is_some()
            || self.cooldown_active(route, t)
            || self.open_canaries() >= self.config.limits.max_concurrent_canaries
        {
            return Vec::new();
        }
        let Some(view) = self.view(route, t) else {
            return Vec::new();
        };
        // A candidate that already gets some traffic starts at the first step above its share.
        let current = view
            .policy
            .and_then(|p| p.cheaper.as_ref())
            .map_or(0.0, |c| weight_of(&view.targets, &c.provider, &c.model));
        let Some(first) = self
            .canary_schedule
            .iter()
            .copied()
            .find(|w| *w > current + 1e-9)
        else {
            return Vec::new();
        };
        let targets = view.targets.clone();
        let Some(p) = canary::evaluate(&view, first) else {
            return Vec::new();
        };
        let out = self.create(p, targets);
        if !out.is_empty() {
            self.canaried.insert(key);
        }
        out
    }

    fn on_anomaly(&mut self, a: &Anomaly) {
        let list = self
            .anomalies
            .entry((
                a.app.clone(),
                a.route.clone(),
                a.provider.clone(),
                a.model.clone(),
            ))
            .or_default();
        if list.iter().any(|(_, id)| id == &a.id) {
            return;
        }
        list.push((a.event_time, a.id.clone()));
        list.sort();
        while list.len() > ANOMALIES_KEPT {
            list.remove(0);
        }
    }

    fn on_config_change(&mut self, c: &ConfigChange) -> Vec<Output> {
        let route = (c.app.clone(), c.route.clone());
        let live = self.routing.config(&c.app, &c.route);
        let params_changed = live.is_none_or(|cfg| cfg.params != c.params);
        let targets_changed = live.is_none_or(|cfg| cfg.targets != c.targets);
        let previous_targets = c
            .previous_version
            .and_then(|v| self.routing.at_version(&c.app, &c.route, v))
            .map(|cfg| cfg.targets.clone());
        if !self.routing.project(c) {
            return Vec::new();
        }
        if params_changed {
            // Windows from here on are served under the new params: the tuner counts them
            // for the new arm, and the router judges models by them alone.
            let state = self.tuning.entry(route.clone()).or_default();
            state.params_since = state.params_since.max(c.event_time);
        }
        if targets_changed {
            let state = self.tuning.entry(route.clone()).or_default();
            state.targets_since = state.targets_since.max(c.event_time);
        }
        if c.decision_id.is_some()
            && self.rollbacks_pending.get(&route).map(|(id, _)| id) == c.decision_id.as_ref()
        {
            self.rollbacks_pending.remove(&route);
        }
        let last = self
            .last_change
            .entry(route.clone())
            .or_insert(c.event_time);
        *last = (*last).max(c.event_time);
        if let Some(id) = &c.decision_id {
            if let Some(od) = self.open.get_mut(id) {
                let applicable = matches!(
                    od.state(),
                    DecisionState::Proposed | DecisionState::Approved | DecisionState::Applying
                );
                if !applicable {
                    return Vec::new();
                }
                let opens_circuit = od.first_change.is_none()
                    && od.event.strategy == Strategy::Failover
                    && !od.event.params.contains_key(PARAM_PHASE);
                let moved = opens_circuit.then(|| {
                    let param = |k: &str| od.event.params.get(k).cloned().unwrap_or_default();
                    (
                        (param(PARAM_FROM_PROVIDER), param(PARAM_FROM_MODEL)),
                        (param(PARAM_PROVIDER), param(PARAM_MODEL)),
                        param(PARAM_SHIFT).parse::<f64>().unwrap_or(0.0),
                    )
                });
                if od.first_change.is_none() {
                    od.first_change = Some(AppliedChange {
                        time: c.event_time,
                        previous_version: c.previous_version,
                        previous_targets: previous_targets
                            .or_else(|| Some(od.targets_at_creation.clone())),
                    });
                }
                od.verifying_since = Some(c.event_time);
                let reason = format!(
                    "{} applied as {} (v{}); verifying",
                    od.event.action, c.id, c.version
                );
                let mut out = vec![od.transition(
                    DecisionState::Verifying,
                    c.event_time,
                    Some(reason),
                    None,
                    None,
                )];
                let applied_only = od.verification == Verification::Applied;
                if applied_only {
                    out.push(od.transition(
                        DecisionState::Succeeded,
                        c.event_time,
                        Some(format!(
                            "{} applied as {} (v{}); a quality-guard step undoes harm and is \
                             not compared",
                            od.event.action, c.id, c.version
                        )),
                        None,
                        None,
                    ));
                }
                if applied_only {
                    self.close(id);
                }
                if let Some((from, to, shift)) = moved {
                    self.open_circuit(&route, from, to, shift, c.event_time);
                }
                return out;
            }
            if self.used_ids.contains(id) {
                return Vec::new();
            }
        }
        if matches!(c.kind, ChangeKind::Manual | ChangeKind::Apply) {
            self.watches.insert(
                route,
                Watch {
                    change_id: c.id.clone(),
                    version: c.version,
                    previous_version: c.previous_version,
                    previous_targets,
                    change_time: c.event_time,
                },
            );
        }
        Vec::new()
    }

    fn on_decision(&mut self, d: &DecisionEvent) -> Vec<Output> {
        let Some(od) = self.open.get_mut(&d.id) else {
            return Vec::new();
        };
        let step = decision_step(d).unwrap_or(od.step);
        if od.seen.contains(&(state_name(d.state).to_string(), step)) {
            return Vec::new();
        }
        match (od.state(), d.state) {
            (DecisionState::Proposed, DecisionState::Approved) => {
                od.accept(DecisionState::Approved, step);
                let mut out = Vec::new();
                if after_approval(od, d.event_time, &mut out) {
                    self.close(&d.id);
                }
                out
            }
            (DecisionState::Proposed, DecisionState::Rejected) => {
                od.accept(DecisionState::Rejected, step);
                self.close(&d.id);
                Vec::new()
            }
            (DecisionState::Approved, DecisionState::Applying) => {
                od.accept(DecisionState::Applying, step);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

/// What happens on approval beyond the actuator: a quantization request publishes its job and
/// is done (SUCCEEDED). Returns true when the decision is closed.
fn after_approval(od: &mut OpenDecision, time: i64, out: &mut Vec<Output>) -> bool {
    let Some(mut job) = od.job.clone() else {
        return false;
    };
    job.event_time = time;
    out.push(job_output(&job));
    out.push(od.transition(
        DecisionState::Succeeded,
        time,
        Some(format!("quantization job {} submitted", job.job_id)),
        None,
        None,
    ));
    true
}

fn no_evidence() -> Evidence {
    Evidence {
        test: "none".to_string(),
        statistic: None,
        p_value: None,
        metrics: BTreeMap::new(),
    }
}

/// Alert name of an open circuit: a route failed away from a model and owes it traffic back.
pub const ALERT_CIRCUIT_OPEN: &str = "LlmoptCircuitOpen";

/// Alerts for circuits that opened (FIRING) or closed (RESOLVED) between `before` and
/// `after`, so operators see a route running on its fallback chain where they watch alerts,
/// not only in the decisions topic. Ids depend on the circuit's opening time: replays agree.
fn circuit_alerts(
    before: &BTreeMap<RouteId, BTreeMap<ModelKey, Circuit>>,
    after: &BTreeMap<RouteId, BTreeMap<ModelKey, Circuit>>,
    now: i64,
) -> Vec<Output> {
    let mut out = Vec::new();
    let opened_at =
        |cs: &BTreeMap<RouteId, BTreeMap<ModelKey, Circuit>>, r: &RouteId, m: &ModelKey| {
            cs.get(r).and_then(|c| c.get(m)).map(|c| c.opened_at)
        };
    for (route, circuits) in after {
        for (model, c) in circuits {
            if opened_at(before, route, model) != Some(c.opened_at) {
                out.push(circuit_alert(route, model, Some(c), c.opened_at, now));
            }
        }
    }
    for (route, circuits) in before {
        for (model, c) in circuits {
            if opened_at(after, route, model) != Some(c.opened_at) {
                out.push(circuit_alert(route, model, None, c.opened_at, now));
            }
        }
    }
    out
}

/// One circuit alert: FIRING with the circuit's state when `open` is given, RESOLVED otherwise.
fn circuit_alert(
    route: &RouteId,
    model: &ModelKey,
    open: Option<&Circuit>,
    opened_at: i64,
    now: i64,
) -> Output {
    let dedup_key = format!(
        "{ALERT_CIRCUIT_OPEN}/{}/{}/{}/{}",
        route.0, route.1, model.0, model.1
    );
    let mut labels: BTreeMap<String, String> = [
        ("app", route.0.as_str()),
        ("route", route.1.as_str()),
        ("provider", model.0.as_str()),
        ("model", model.1.as_str()),
        ("service", crate::SERVICE_NAME),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, summary, value) = match open {
        Some(c) => {
            labels.insert(
                "holder".to_string(),
                format!("{}/{}", c.holder.0, c.holder.1),
            );
            (
                llmopt_events::AlertStatus::Firing,
                format!(
                    "{}/{}: circuit open for {}/{} (failed over to {}/{}; {} of the route owed \
                     back, fail-back probes it when it recovers)",
                    route.0,
                    route.1,
                    model.0,
                    model.1,
                    c.holder.0,
                    c.holder.1,
                    crate::strategies::fmt_num(c.owed)
                ),
                Some(c.owed),
            )
        }
        None => (
            llmopt_events::AlertStatus::Resolved,
            format!(
                "{}/{}: circuit closed for {}/{} (its traffic is back or moved elsewhere)",
                route.0, route.1, model.0, model.1
            ),
            None,
        ),
    };
    let state = if open.is_some() { "firing" } else { "resolved" };
    let alert = llmopt_events::Alert {
        id: format!("{dedup_key}/{opened_at}/{state}"),
        dedup_key: dedup_key.clone(),
        status,
        severity: llmopt_events::Severity::Warning,
        alertname: ALERT_CIRCUIT_OPEN.to_string(),
        summary,
        labels,
        value,
        threshold: None,
        starts_at: opened_at,
        ends_at: open.is_none().then_some(now),
        event_time: now,
    };
    Output {
        topic: LogicalTopic::Alerts,
        id: alert.id.clone(),
        key: dedup_key,
        time_ms: now,
        event: AnyEvent::Alert(alert),
    }
}

impl Processor for Decision {
    fn name(&self) -> &'static str {
        crate::SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![
            LogicalTopic::Windows,
            LogicalTopic::Anomalies,
            LogicalTopic::ConfigChanges,
            LogicalTopic::Decisions,
        ]
    }

    /// Decisions weigh every route against the whole fleet's windows and their own lifecycle
    /// events, which are not co-partitioned: one state, one instance.
    fn state_scope(&self) -> StateScope {
        StateScope::Whole
    }

    fn checkpoint_whole(&self) -> Option<Vec<u8>> {
        self.snapshot()
            .inspect_err(|e| tracing::error!(error = %e, "decision state not checkpointed"))
            .ok()
    }

    fn restore_whole(&mut self, state: &[u8]) -> Result<(), String> {
        self.restore(state).map_err(|e| e.to_string())
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        let circuits_before = self.circuits.clone();
        let mut out = match &input.event {
            AnyEvent::WindowAggregate(w) => self.on_window(w),
            AnyEvent::Anomaly(a) => {
                self.on_anomaly(a);
                Vec::new()
            }
            AnyEvent::ConfigChange(c) => self.on_config_change(c),
            AnyEvent::Decision(d) => self.on_decision(d),
            _ => Vec::new(),
        };
        if circuits_before != self.circuits {
            let now = self.now.unwrap_or(0);
            out.extend(circuit_alerts(&circuits_before, &self.circuits, now));
        }
        out
    }
}

#[cfg(test)]
mod tests;
