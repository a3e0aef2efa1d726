//! The actuator core: applies approved decisions to the routing-config projection, exactly once
//! per (decision id, step), as `ConfigChange` events.

use std::collections::{BTreeMap, BTreeSet};

use llmopt_events::{AnyEvent, ConfigChange, Decision, DecisionState};
use llmopt_runtime::{Input, Output, Processor, StateScope};
use llmopt_transport::LogicalTopic;
use serde::{Deserialize, Serialize};

use llmopt_routing::{
    decision_step, parse_action, plan, route_key, Action, ApplyError, RoutingConfig,
    RoutingProjection,
};

/// The actuator's deterministic core.
///
/// Its only state is the projection of `config.changes` (which also tells which decision
/// applications already happened); the runtime checkpoints it with the offsets it covers, and
/// `llmopt actuator rebuild` can still derive the live config from the whole topic.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actuator {
    projection: RoutingProjection,
    /// (decision id, application ordinal) already turned into a `ConfigChange`. The ordinal is
    /// the canary step for APPROVED events and `step + 1` for the ROLLED_BACK that undoes it.
    applied: BTreeSet<(String, u32)>,
    /// Number of changes seen per decision id, to recover `applied` from `config.changes`.
    changes_per_decision: BTreeMap<String, u32>,
}

impl Actuator {
    /// A core that knows no route yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A core restored from the `config.changes` topic, as after a restart.
    pub fn from_changes(changes: impl IntoIterator<Item = ConfigChange>) -> Self {
        let mut core = Self::new();
        for c in changes {
            core.project(&c);
        }
        core
    }

    /// Folds a `ConfigChange` into the projection (idempotent: a version seen before changes
    /// nothing). Changes carrying a decision id mark that decision's next application as done.
    pub fn project(&mut self, change: &ConfigChange) {
        self.project_with_ordinal(change, None);
    }

    fn project_with_ordinal(&mut self, change: &ConfigChange, ordinal: Option<u32>) {
        if !self.projection.project(change) {
            return;
        }
        if let Some(id) = &change.decision_id {
            let count = self.changes_per_decision.entry(id.clone()).or_default();
            let ordinal = ordinal.unwrap_or(*count);
            *count = (*count).max(ordinal + 1);
            self.applied.insert((id.clone(), ordinal));
        }
    }

    /// The current routing config of an app/route.
    pub fn config(&self, app: &str, route: &str) -> Option<&RoutingConfig> {
        self.projection.config(app, route)
    }

    /// The projection (current configs and recent versions).
    pub fn projection(&self) -> &RoutingProjection {
        &self.projection
    }

    /// The live configs that replaying `changes` produces: what the state store must hold.
    pub fn rebuild(
        changes: impl IntoIterator<Item = ConfigChange>,
    ) -> BTreeMap<(String, String), RoutingConfig> {
        let mut projection = RoutingProjection::new();
        for c in changes {
            projection.project(&c);
        }
        projection.into_configs()
    }

    /// Handles one decision event: the `ConfigChange` (and APPLYING decision) it causes, if any.
    pub fn handle_decision(&mut self, d: &Decision) -> Vec<Output> {
        match self.try_handle_decision(d) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(decision = %d.id, error = %e, "decision not applied");
                Vec::new()
            }
        }
    }

    fn try_handle_decision(&mut self, d: &Decision) -> Result<Vec<Output>, ApplyError> {
        let action = parse_action(d)?;
        let step = decision_step(d)?;
        let ordinal = match (d.state, &action) {
            (_, Action::Quantize) => return Ok(Vec::new()),
            (DecisionState::Approved, _) => step,
            (DecisionState::RolledBack, Action::RollbackToVersion { .. }) => step + 1,
            _ => return Ok(Vec::new()),
        };
        if self.applied.contains(&(d.id.clone(), ordinal)) {
            return Ok(Vec::new());
        }
        let Some(plan) = plan(&action, &d.app, &d.route, &self.projection)? else {
            return Ok(Vec::new());
        };
        let current = self.projection.config(&d.app, &d.route);
        let version = current.map_or(1, |c| c.version + 1);
        let change = ConfigChange {
            id: format!("{}/{}/v{version}", d.app, d.route),
            event_time: d.event_time,
            app: d.app.clone(),
            route: d.route.clone(),
            version,
            previous_version: current.map(|c| c.version),
            kind: plan.kind,
            decision_id: Some(d.id.clone()),
            targets: plan.targets,
            params: plan
                .params
                .unwrap_or_else(|| current.map(|c| c.params.clone()).unwrap_or_default()),
        };
        self.project_with_ordinal(&change, Some(ordinal));
        let key = route_key(&d.app, &d.route);
        let mut out = vec![Output {
            topic: LogicalTopic::ConfigChanges,
            id: change.id.clone(),
            key: key.clone(),
            time_ms: d.event_time,
            event: AnyEvent::ConfigChange(change.clone()),
        }];
        if d.state == DecisionState::Approved {
            let mut applying = d.clone();
            applying.state = DecisionState::Applying;
            applying.reason = format!("applying as {} version {version}", change.id);
            applying.caused_by = vec![change.id.clone()];
            out.push(Output {
                topic: LogicalTopic::Decisions,
                id: format!("{}/APPLYING/{step}", d.id),
                key,
                time_ms: d.event_time,
                event: AnyEvent::Decision(applying),
            });
        }
        Ok(out)
    }
}

impl Processor for Actuator {
    fn name(&self) -> &'static str {
        crate::SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::Decisions, LogicalTopic::ConfigChanges]
    }

    /// Versions are per route but decisions and changes are not co-partitioned with each
    /// other: one projection, one instance.
    fn state_scope(&self) -> StateScope {
        StateScope::Whole
    }

    fn checkpoint_whole(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match ciborium::into_writer(self, &mut out) {
            Ok(()) => Some(out),
            Err(e) => {
                tracing::error!(error = %e, "actuator state not checkpointed");
                None
            }
        }
    }

    fn restore_whole(&mut self, state: &[u8]) -> Result<(), String> {
        *self = ciborium::from_reader(state).map_err(|e| format!("actuator snapshot: {e}"))?;
        Ok(())
    }

    fn process(&mut self, input: &Input) -> Vec<Output> {
        match &input.event {
            AnyEvent::ConfigChange(c) => {
                self.project(c);
                Vec::new()
            }
            AnyEvent::Decision(d) => self.handle_decision(d),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use llmopt_events::{ChangeKind, DecisionMode, Evidence, RouteTarget, Strategy};
    use llmopt_routing::*;

    pub(crate) fn decision(id: &str, action: &str, params: &[(&str, &str)]) -> Decision {
        Decision {
            id: id.into(),
            event_time: 60_000,
            strategy: Strategy::Failover,
            state: DecisionState::Approved,
            mode: DecisionMode::Auto,
            app: "app".into(),
            route: "chat".into(),
            action: action.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            reason: "test".into(),
            evidence: Evidence {
                test: "none".into(),
                statistic: None,
                p_value: None,
                metrics: BTreeMap::new(),
            },
            caused_by: vec![],
        }
    }

    fn t(p: &str, m: &str, w: f64) -> RouteTarget {
        RouteTarget {
            provider: p.into(),
            model: m.into(),
            weight: w,
        }
    }

    fn initial() -> ConfigChange {
        ConfigChange {
            id: "app/chat/v1".into(),
            event_time: 0,
            app: "app".into(),
            route: "chat".into(),
            version: 1,
            previous_version: None,
            kind: ChangeKind::Initial,
            decision_id: None,
            targets: vec![t("openai", "gpt", 1.0)],
            params: [("temperature".to_string(), "0.2".to_string())].into(),
        }
    }

    #[test]
    fn set_params_changes_only_params_and_a_rollback_restores_them() {
        let mut a = Actuator::new();
        a.process(&input(AnyEvent::ConfigChange(initial())));
        let set = decision(
            "tuning/app/chat/60000",
            ACTION_SET_PARAMS,
            &[("set.max_tokens", "256"), ("set.temperature", "0")],
        );
        let out = a.process(&input(AnyEvent::Decision(set.clone())));
        let cs = changes(&out);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].targets, initial().targets);
        assert_eq!(
            cs[0].params.get("max_tokens").map(String::as_str),
            Some("256")
        );
        assert_eq!(
            cs[0].params.get("temperature").map(String::as_str),
            Some("0")
        );
        // Rolled back: version 1 whole, params included.
        let mut rb = set;
        rb.state = DecisionState::RolledBack;
        rb.action = ACTION_ROLLBACK.into();
        rb.params.insert(PARAM_TARGET_VERSION.into(), "1".into());
        let out = a.process(&input(AnyEvent::Decision(rb)));
        let cs = changes(&out);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].kind, ChangeKind::Rollback);
        assert_eq!(cs[0].params, initial().params);
        // A set_params decision without any set.* param is refused.
        let empty = decision("tuning/app/chat/120000", ACTION_SET_PARAMS, &[]);
        assert!(a.process(&input(AnyEvent::Decision(empty))).is_empty());
    }

    fn input(event: AnyEvent) -> Input {
        Input {
            topic: match &event {
                AnyEvent::Decision(_) => LogicalTopic::Decisions,
                _ => LogicalTopic::ConfigChanges,
            },
            partition: 0,
            offset: 0,
            id: "in".into(),
            source: "test".into(),
            time_ms: None,
            event,
        }
    }

    fn changes(out: &[Output]) -> Vec<ConfigChange> {
        out.iter()
            .filter_map(|o| match &o.event {
                AnyEvent::ConfigChange(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn failover() -> Decision {
        decision(
            "failover/app/chat/60000",
            ACTION_SHIFT_TRAFFIC,
            &[
                (PARAM_FROM_PROVIDER, "openai"),
                (PARAM_FROM_MODEL, "gpt"),
                (PARAM_PROVIDER, "anthropic"),
                (PARAM_MODEL, "claude"),
                (PARAM_SHIFT, "0.5"),
            ],
        )
    }

    #[test]
    fn same_decision_twice_gives_one_change() {
        let mut a = Actuator::new();
        a.process(&input(AnyEvent::ConfigChange(initial())));
        let out = a.process(&input(AnyEvent::Decision(failover())));
        let cs = changes(&out);
        assert_eq!(cs.len(), 1);
        assert_eq!(out.len(), 2, "a ConfigChange and an APPLYING decision");
        let c = &cs[0];
        assert_eq!(c.id, "app/chat/v2");
        assert_eq!(c.version, 2);
        assert_eq!(c.previous_version, Some(1));
        assert_eq!(c.kind, ChangeKind::Apply);
        assert_eq!(c.decision_id.as_deref(), Some("failover/app/chat/60000"));
        assert_eq!(c.params.get("temperature").map(String::as_str), Some("0.2"));
        assert!((weight_of(&c.targets, "anthropic", "claude") - 0.5).abs() < 1e-9);
        match &out[1].event {
            AnyEvent::Decision(d) => assert_eq!(d.state, DecisionState::Applying),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(out[1].id, "failover/app/chat/60000/APPLYING/0");
        // The same event again, and the echo of our own change, produce nothing.
        assert!(a.process(&input(AnyEvent::Decision(failover()))).is_empty());
        assert!(a
            .process(&input(AnyEvent::ConfigChange(c.clone())))
            .is_empty());
        assert!(a.process(&input(AnyEvent::Decision(failover()))).is_empty());
        assert_eq!(a.config("app", "chat").unwrap().version, 2);
    }

    #[test]
    fn restart_from_changes_does_not_reapply() {
        let mut a = Actuator::new();
        a.project(&initial());
        let cs = changes(&a.handle_decision(&failover()));
        let mut restarted = Actuator::from_changes([initial(), cs[0].clone()]);
        assert!(restarted.handle_decision(&failover()).is_empty());
    }

    #[test]
    fn non_actionable_states_and_quantize_produce_nothing() {
        let mut a = Actuator::new();
        a.project(&initial());
        let mut d = failover();
        d.state = DecisionState::Proposed;
        assert!(a.handle_decision(&d).is_empty());
        d.state = DecisionState::Verifying;
        assert!(a.handle_decision(&d).is_empty());
        let q = decision("q", ACTION_QUANTIZE, &[]);
        assert!(a.handle_decision(&q).is_empty());
        let bad = decision("b", ACTION_ROLLBACK, &[(PARAM_TARGET_VERSION, "77")]);
        assert!(a.handle_decision(&bad).is_empty(), "unknown version");
        assert_eq!(a.config("app", "chat").unwrap().version, 1);
    }

    #[test]
    fn canary_steps_then_rollback() {
        let mut a = Actuator::new();
        a.project(&initial());
        let mut d = decision(
            "canary/app/chat/60000",
            ACTION_START_CANARY,
            &[
                (PARAM_PROVIDER, "cheap"),
                (PARAM_MODEL, "mini"),
                (PARAM_STEP, "0"),
                (PARAM_WEIGHT, "0.05"),
            ],
        );
        d.strategy = Strategy::CheaperModelCanary;
        let c0 = changes(&a.handle_decision(&d));
        assert_eq!(c0[0].kind, ChangeKind::CanaryStep);
        assert!((weight_of(&c0[0].targets, "cheap", "mini") - 0.05).abs() < 1e-9);
        d.params.insert(PARAM_STEP.into(), "1".into());
        d.params.insert(PARAM_WEIGHT.into(), "0.25".into());
        let c1 = changes(&a.handle_decision(&d));
        assert_eq!(c1[0].version, 3);
        assert!((weight_of(&c1[0].targets, "cheap", "mini") - 0.25).abs() < 1e-9);
        assert!((weight_of(&c1[0].targets, "openai", "gpt") - 0.75).abs() < 1e-9);
        // A failed step: the decision core emits ROLLED_BACK with the pre-canary version.
        let mut rb = d.clone();
        rb.state = DecisionState::RolledBack;
        rb.action = ACTION_ROLLBACK.into();
        rb.params.insert(PARAM_TARGET_VERSION.into(), "1".into());
        let out = a.handle_decision(&rb);
        assert_eq!(out.len(), 1, "no APPLYING after a terminal ROLLED_BACK");
        let c2 = changes(&out);
        assert_eq!(c2[0].kind, ChangeKind::Rollback);
        assert_eq!(c2[0].targets, vec![t("openai", "gpt", 1.0)]);
        assert!(a.handle_decision(&rb).is_empty());
    }

    #[test]
    fn weights_always_sum_to_one() {
        let mut a = Actuator::new();
        let mut c = initial();
        c.targets = vec![t("a", "1", 0.3), t("b", "2", 0.3), t("c", "3", 0.4)];
        a.project(&c);
        let mut id = 0;
        for w in ["0.05", "0.25", "0.5", "1.0"] {
            id += 1;
            let d = decision(
                &format!("c{id}"),
                ACTION_START_CANARY,
                &[(PARAM_PROVIDER, "d"), (PARAM_MODEL, "4"), (PARAM_WEIGHT, w)],
            );
            for ch in changes(&a.handle_decision(&d)) {
                let s: f64 = ch.targets.iter().map(|t| t.weight).sum();
                assert!((s - 1.0).abs() < 1e-9, "{s}");
            }
        }
        let f = decision(
            "f",
            ACTION_SHIFT_TRAFFIC,
            &[
                (PARAM_FROM_PROVIDER, "d"),
                (PARAM_FROM_MODEL, "4"),
                (PARAM_PROVIDER, "e"),
                (PARAM_MODEL, "5"),
                (PARAM_SHIFT, "0.333333333333"),
            ],
        );
        let ch = changes(&a.handle_decision(&f));
        let s: f64 = ch[0].targets.iter().map(|t| t.weight).sum();
        assert!((s - 1.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn rebuild_equals_live_projection() {
        let mut a = Actuator::new();
        let mut log = vec![initial()];
        a.project(&initial());
        log.extend(changes(&a.handle_decision(&failover())));
        let mut other = initial();
        other.route = "search".into();
        other.id = "app/search/v1".into();
        a.project(&other);
        log.push(other);
        let rb = decision("rb", ACTION_ROLLBACK, &[(PARAM_TARGET_VERSION, "1")]);
        log.extend(changes(&a.handle_decision(&rb)));
        let rebuilt = Actuator::rebuild(log.clone());
        assert_eq!(&rebuilt, a.projection().configs());
        assert_eq!(rebuilt.len(), 2);
        assert_eq!(rebuilt[&("app".to_string(), "chat".to_string())].version, 3);
        // Replaying in any order with duplicates gives the same projection.
        let mut shuffled = log.clone();
        shuffled.reverse();
        shuffled.extend(log);
        assert_eq!(Actuator::rebuild(shuffled), rebuilt);
    }

    #[test]
    fn shift_without_config_uses_carried_targets() {
        let mut a = Actuator::new();
        let mut d = failover();
        d.params.insert(
            PARAM_TARGETS.into(),
            crate::targets_to_param(&[t("openai", "gpt", 0.5), t("anthropic", "claude", 0.5)]),
        );
        let cs = changes(&a.handle_decision(&d));
        assert_eq!(cs[0].version, 1);
        assert_eq!(cs[0].previous_version, None);
        let mut fresh = Actuator::new();
        assert!(fresh.handle_decision(&failover()).is_empty());
    }

    #[test]
    fn ignores_other_events() {
        let mut a = Actuator::new();
        assert_eq!(a.name(), "actuator");
        assert_eq!(
            a.inputs(),
            vec![LogicalTopic::Decisions, LogicalTopic::ConfigChanges]
        );
        let anomaly = llmopt_events::Anomaly {
            id: "x".into(),
            event_time: 0,
            window_id: "w".into(),
            app: "app".into(),
            route: "chat".into(),
            provider: "p".into(),
            model: "m".into(),
            metric: "error_rate".into(),
            value: 1.0,
            baseline: 0.0,
            score: 9.0,
            direction: llmopt_events::Direction::Up,
            detector: "ewma".into(),
        };
        assert!(a.process(&input(AnyEvent::Anomaly(anomaly))).is_empty());
    }
}
