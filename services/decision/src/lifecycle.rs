//! The decision lifecycle: an open decision, the state changes it has been through, and the
//! `Decision` events its transitions publish.
//!
//! Every state change is published with the decision's id and the output id
//! `{decision_id}/{STATE}/{step}`, so replays reproduce the same event ids and the core can tell
//! its own events (echoed back on `decisions`) from an operator's by the (state, step) pairs it
//! already knows.

use std::collections::{BTreeMap, BTreeSet};

use llmopt_events::{
    AnyEvent, Decision as DecisionEvent, DecisionState, Evidence, QuantizationJob, RouteTarget,
    Strategy,
};
use llmopt_routing::{route_key, PARAM_STEP};
use llmopt_runtime::Output;
use llmopt_transport::LogicalTopic;
use serde::{Deserialize, Serialize};

/// The contract's name of a state (`APPROVED`, ...), as used in output ids.
pub fn state_name(state: DecisionState) -> &'static str {
    match state {
        DecisionState::Proposed => "PROPOSED",
        DecisionState::Approved => "APPROVED",
        DecisionState::Applying => "APPLYING",
        DecisionState::Verifying => "VERIFYING",
        DecisionState::Succeeded => "SUCCEEDED",
        DecisionState::RolledBack => "ROLLED_BACK",
        DecisionState::Rejected => "REJECTED",
        DecisionState::Expired => "EXPIRED",
    }
}

/// The id segment of a strategy, as used in decision ids.
pub fn strategy_slug(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::RegressionRollback => "regression_rollback",
        Strategy::Failover => "failover",
        Strategy::CheaperModelCanary => "cheaper_model_canary",
        Strategy::QuantizationRequest => "quantization_request",
        Strategy::ParameterTuning => "parameter_tuning",
        Strategy::Experiment => "experiment",
    }
}

/// The deterministic id of a decision: `{strategy}/{app}/{route}/{trigger_time}`.
pub fn decision_id(strategy: Strategy, app: &str, route: &str, trigger_time: i64) -> String {
    format!("{}/{app}/{route}/{trigger_time}", strategy_slug(strategy))
}

/// The first change applied for a decision: where verification's baseline ends and what a
/// rollback restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedChange {
    /// Event time of the change.
    pub time: i64,
    /// Version the route had before (the rollback target).
    pub previous_version: Option<i64>,
    /// Targets the route had before.
    pub previous_targets: Option<Vec<RouteTarget>>,
}

/// What verification compares after a decision's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verification {
    /// The whole route after the change against the route before the first change
    /// (`baseline_windows`): canaries, rollbacks.
    Route,
    /// The traffic a failover moved: the fallback's windows after the change against the
    /// failing provider/model's windows that triggered it. Comparing the whole route would
    /// call a partial failover "worse" merely because the incident it reacts to goes on.
    MovedTraffic {
        /// (provider, model) traffic was taken from.
        from: (String, String),
        /// (provider, model) traffic was moved to.
        to: (String, String),
    },
    /// A router step: the route after the change against its own constraints (error rate as
    /// for `Route`, quality against the floor, latency against the SLO).
    Constraints {
        /// The route's quality floor.
        quality_floor: Option<f64>,
        /// The route's latency SLO (p95, ms).
        latency_slo_p95_ms: Option<f64>,
        /// A parameter trial: given up as soon as the route's mean quality since the change is
        /// under the floor, significant or not (`rollback::trial_under_floor`).
        #[serde(default)]
        trial: bool,
    },
    /// Not compared: a quality-guard step undoes harm, like a rollback; it succeeds once
    /// applied.
    Applied,
}

/// A decision that has not reached a terminal state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenDecision {
    /// The decision as last published (its `state` is the current state).
    pub event: DecisionEvent,
    /// Event time it was created (proposal TTL starts here).
    pub created_at: i64,
    /// (state, step) pairs published or accepted: echoes of these are ignored.
    pub seen: BTreeSet<(String, u32)>,
    /// Current canary step (0 for other strategies).
    pub step: u32,
    /// Canary weights per step (empty for other strategies).
    pub schedule: Vec<f64>,
    /// The first change applied for it.
    pub first_change: Option<AppliedChange>,
    /// Event time of the change of the current step, while verifying.
    pub verifying_since: Option<i64>,
    /// Targets of the route when the decision was made (rollback target when the route had no
    /// versioned config).
    pub targets_at_creation: Vec<RouteTarget>,
    /// Quantization job to publish once approved.
    pub job: Option<QuantizationJob>,
    /// What its verification compares.
    pub verification: Verification,
}

impl OpenDecision {
    /// The current state.
    pub fn state(&self) -> DecisionState {
        self.event.state
    }

    /// Whether the decision has been approved (by mode or operator) and not yet finished:
    /// a change is, or is about to be, in flight.
    pub fn in_flight(&self) -> bool {
        matches!(
            self.state(),
            DecisionState::Approved | DecisionState::Applying | DecisionState::Verifying
        )
    }

    /// Whether this decision changes routing (quantization requests do not).
    pub fn changes_routing(&self) -> bool {
        self.event.strategy != Strategy::QuantizationRequest
    }

    /// Moves to `state` at `time` and returns the event to publish. `reason`, `evidence` and
    /// `params` replace the current ones when given.
    pub fn transition(
        &mut self,
        state: DecisionState,
        time: i64,
        reason: Option<String>,
        evidence: Option<Evidence>,
        params: Option<BTreeMap<String, String>>,
    ) -> Output {
        self.event.state = state;
        self.event.event_time = time;
        if let Some(r) = reason {
            self.event.reason = r;
        }
        if let Some(e) = evidence {
            self.event.evidence = e;
        }
        if let Some(p) = params {
            self.event.params = p;
        }
        self.seen.insert((state_name(state).to_string(), self.step));
        decision_output(&self.event, self.step)
    }

    /// Records an accepted external transition (no event published: the operator's event is it).
    pub fn accept(&mut self, state: DecisionState, step: u32) {
        self.event.state = state;
        self.seen.insert((state_name(state).to_string(), step));
    }

    /// Params for the current step, with `step` (and for canaries `weight`) set.
    pub fn step_params(&self) -> BTreeMap<String, String> {
        let mut p = self.event.params.clone();
        if !self.schedule.is_empty() {
            p.insert(PARAM_STEP.to_string(), self.step.to_string());
            if let Some(w) = self.schedule.get(self.step as usize) {
                p.insert(
                    llmopt_routing::PARAM_WEIGHT.to_string(),
                    crate::strategies::fmt_num(*w),
                );
            }
        }
        p
    }
}

/// The output publishing a decision event: topic `decisions`, key `{app}/{route}`, id
/// `{decision_id}/{STATE}/{step}`, time = the event's time.
pub fn decision_output(d: &DecisionEvent, step: u32) -> Output {
    Output {
        topic: LogicalTopic::Decisions,
        id: format!("{}/{}/{step}", d.id, state_name(d.state)),
        key: route_key(&d.app, &d.route),
        time_ms: d.event_time,
        event: AnyEvent::Decision(d.clone()),
    }
}

/// The output publishing a quantization job: topic `quantization.jobs`, key = model name.
pub fn job_output(job: &QuantizationJob) -> Output {
    Output {
        topic: LogicalTopic::QuantizationJobs,
        id: job.job_id.clone(),
        key: job.model_name.clone(),
        time_ms: job.event_time,
        event: AnyEvent::QuantizationJob(job.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic() {
        assert_eq!(
            decision_id(Strategy::Failover, "a", "r", 60_000),
            "failover/a/r/60000"
        );
        assert_eq!(state_name(DecisionState::RolledBack), "ROLLED_BACK");
        // Same spelling as the contract's serde names.
        for s in [
            DecisionState::Proposed,
            DecisionState::Approved,
            DecisionState::Applying,
            DecisionState::Verifying,
            DecisionState::Succeeded,
            DecisionState::RolledBack,
            DecisionState::Rejected,
            DecisionState::Expired,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json.trim_matches('"'), state_name(s));
        }
    }
}
