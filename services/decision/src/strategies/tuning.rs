//! Parameter tuning: a bandit over a route's parameter arms (sets of request settings such as
//! `max_tokens` or `temperature`), with the route's quality floor as its guard.
//!
//! Windows are per model, not per parameter set, so an arm is measured while it is live: each
//! window of a model served entirely under arm `a` (after the first window following the
//! change) counts for `(a, model)`. Comparing arms model by model keeps the comparison fair while
//! the router moves traffic between models: an arm's expected quality and cost on the route are
//! its per-model figures weighted by the current routing.
//!
//! An arm not yet measured on the models that carry the route is tried (one verified decision,
//! rolled back if the route falls under its floor or gets worse); once every arm is measured,
//! Thompson sampling over the arms' quality (Normal) picks the cheapest arm whose drawn quality
//! meets the floor and is within `tuning.quality_margin` of the best drawn arm, and the tuner
//! switches to it when it wins at least `tuning.switch_probability` of the draws.

use std::collections::BTreeMap;

use llmopt_events::{RouteTarget, Strategy};
use llmopt_routing::{ACTION_SET_PARAMS, PARAM_SET_PREFIX};
use rand::distributions::Distribution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::Normal;

use super::{evidence, Proposal, RouteView};
use crate::history::{ModelKey, WindowPoint};
use crate::stats::TestResult;

/// Param naming the tuner's reason for a decision.
pub use super::failover::PARAM_PHASE;
/// Trying an arm not measured yet.
pub const PHASE_TRIAL: &str = "trial";
/// Switching to the arm the posterior prefers.
pub const PHASE_SWITCH: &str = "switch";

/// Per-call spread of quality scores assumed until an arm's windows show their own.
const PRIOR_QUALITY_SD: f64 = 0.15;

/// What one arm did on one model: sums over the windows served under it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    /// Windows counted.
    pub windows: u32,
    /// Calls.
    pub calls: i64,
    /// Cost (USD).
    pub cost_usd: f64,
    /// Scored calls.
    pub scored: i64,
    /// Sum of quality scores.
    pub quality_sum: f64,
    /// Sum over windows of scored calls × window mean², for the per-call spread.
    pub quality_sq: f64,
}

impl ArmStats {
    /// Adds one window.
    pub fn add(&mut self, p: &WindowPoint) {
        self.windows += 1;
        self.calls += p.count;
        self.cost_usd += p.cost_usd;
        self.scored += p.quality_count;
        self.quality_sum += p.quality_sum;
        if p.quality_count > 0 {
            let m = p.quality_sum / p.quality_count as f64;
            self.quality_sq += p.quality_count as f64 * m * m;
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.quality_sum / self.scored as f64)
    }

    /// Per-call standard deviation of scores, from the scatter of window means.
    fn sd(&self) -> f64 {
        let Some(m) = self.mean() else {
            return PRIOR_QUALITY_SD;
        };
        if self.windows < 3 {
            return PRIOR_QUALITY_SD;
        }
        let ss = (self.quality_sq - self.scored as f64 * m * m).max(0.0);
        (ss / f64::from(self.windows - 1)).sqrt().clamp(0.03, 0.5)
    }
}

/// The tuner's memory of one route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteTuning {
    /// Per arm (index into the policy's arms), per model.
    pub stats: BTreeMap<usize, BTreeMap<ModelKey, ArmStats>>,
    /// When the route's params last changed (event time): only windows starting after it are
    /// counted (see `History::windows_after`).
    pub params_since: i64,
    /// Windows already counted, by window id, so a revision is not counted twice.
    pub counted: BTreeMap<String, i64>,
    /// Arms whose trial was given up, by arm index.
    #[serde(default)]
    pub abandoned: BTreeMap<usize, Abandoned>,
    /// When the route's targets last changed (event time): trials wait until the route has
    /// been served by the same models for `tuning.settle_windows`.
    #[serde(default)]
    pub targets_since: i64,
    /// The arm each recent window (by start) was served under entirely, so the router judges
    /// models by the windows of the live arm, including those of earlier periods under it.
    #[serde(default)]
    pub window_arms: BTreeMap<i64, usize>,
}

/// An arm whose trial was given up: not tried again before `until`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Abandoned {
    /// Event time before which the arm is not tried again.
    pub until: i64,
    /// Trials given up so far (the wait doubles with each).
    pub times: u32,
}

impl RouteTuning {
    /// Records that a trial of `arm` was given up at `t`: the arm waits `retry_after_ms`,
    /// doubled for every earlier abandoned trial, before it is tried again. Its windows stay
    /// counted, so repeated short trials add up to a measured arm.
    pub fn abandon(&mut self, arm: usize, t: i64, retry_after_ms: i64) {
        let a = self.abandoned.entry(arm).or_default();
        let wait = retry_after_ms.saturating_mul(1_i64 << a.times.min(16));
        a.times += 1;
        a.until = t.saturating_add(wait);
    }

    /// Whether a window starting at `start` was served under `arm` (or, for windows not
    /// recorded, whether it started after the last change of params).
    pub fn served_under(&self, arm: usize, start: i64) -> bool {
        match self.window_arms.get(&start) {
            Some(a) => *a == arm,
            None => start > self.params_since,
        }
    }

    /// Whether `arm` may be tried at `t`.
    fn may_try(&self, arm: usize, t: i64) -> bool {
        self.abandoned.get(&arm).is_none_or(|a| t >= a.until)
    }
}

/// The index of the arm `params` are in (every key of the arm has its value), if any.
pub fn live_arm(
    arms: &[BTreeMap<String, String>],
    params: &BTreeMap<String, String>,
) -> Option<usize> {
    arms.iter()
        .position(|a| !a.is_empty() && a.iter().all(|(k, v)| params.get(k) == Some(v)))
}

/// The index of the arm a tuner decision sets (its `set.<name>` params).
pub fn arm_of_decision(
    arms: &[BTreeMap<String, String>],
    params: &BTreeMap<String, String>,
) -> Option<usize> {
    let set: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PARAM_SET_PREFIX)?.to_string(), v.clone())))
        .collect();
    live_arm(arms, &set)
}

/// An arm's expected quality and cost per call under the current routing, and the scored
/// calls it rests on; `None` when a model with a real share has fewer than `min_scored` scored
/// calls under the arm.
fn arm_estimate(
    per_model: Option<&BTreeMap<ModelKey, ArmStats>>,
    targets: &[RouteTarget],
    min_scored: i64,
) -> Option<(f64, f64, f64)> {
    let mut quality = 0.0;
    let mut cost = 0.0;
    let mut var = 0.0;
    let mut weight = 0.0;
    for t in targets.iter().filter(|t| t.weight > 0.05) {
        let s = per_model?.get(&(t.provider.clone(), t.model.clone()))?;
        if s.scored < min_scored || s.calls == 0 {
            return None;
        }
        let m = s.mean()?;
        quality += t.weight * m;
        cost += t.weight * s.cost_usd / s.calls as f64;
        var += (t.weight * s.sd()).powi(2) / s.scored as f64;
        weight += t.weight;
    }
    (weight > 0.0).then(|| (quality / weight, cost / weight, var.sqrt() / weight))
}

/// Knobs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TuningKnobs {
    /// Scored calls per serving model that make an arm measured.
    pub min_scored: i64,
    /// How much below the best arm's quality an arm may be.
    pub quality_margin: f64,
    /// Share of draws an arm must win before the tuner switches to it.
    pub switch_probability: f64,
    /// Posterior draws.
    pub draws: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Event time now.
    pub now: i64,
    /// Whether the route's models have been stable long enough for a trial.
    pub settled: bool,
    /// Whether the route's cooldown is running: only a switch away from a live arm measured
    /// under the floor goes then (it undoes harm, like a rollback).
    pub cooldown: bool,
}

/// The tuner's proposal for a route whose live params are arm `live`, if any.
pub fn evaluate(
    view: &RouteView<'_>,
    arms: &[BTreeMap<String, String>],
    live: usize,
    tuning: &RouteTuning,
    floor: Option<f64>,
    knobs: &TuningKnobs,
) -> Option<Proposal> {
    let estimates: Vec<Option<(f64, f64, f64)>> = (0..arms.len())
        .map(|a| arm_estimate(tuning.stats.get(&a), &view.targets, knobs.min_scored))
        .collect();
    // Measure the live arm first, then try the first arm not measured (on a settled route,
    // not while an abandoned trial of it waits); meanwhile choose among the measured ones.
    let (live_quality, _, _) = estimates[live]?;
    let live_under_floor = floor.is_some_and(|f| live_quality < f);
    if knobs.cooldown && !live_under_floor {
        return None;
    }
    let untried = (0..arms.len()).find(|&a| estimates[a].is_none() && tuning.may_try(a, knobs.now));
    if let Some(untried) = untried.filter(|_| knobs.settled && !knobs.cooldown) {
        return Some(proposal(
            view,
            &arms[untried],
            PHASE_TRIAL,
            format!(
                "trying parameters {} (not measured yet on the models serving the route)",
                describe(&arms[untried])
            ),
            None,
            metrics(arms, &estimates, &[], floor),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(knobs.seed);
    let dists: Vec<Option<Normal>> = estimates
        .iter()
        .map(|e| e.and_then(|(q, _, se)| Normal::new(q, se.max(1e-6)).ok()))
        .collect();
    let mut wins = vec![0usize; arms.len()];
    for _ in 0..knobs.draws {
        let q: Vec<f64> = dists
            .iter()
            .map(|d| d.as_ref().map_or(f64::NEG_INFINITY, |d| d.sample(&mut rng)))
            .collect();
        let best = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let feasible = (0..arms.len())
            .filter(|&a| q[a] >= best - knobs.quality_margin && floor.is_none_or(|f| q[a] >= f));
        let cost = |a: usize| estimates[a].map_or(f64::INFINITY, |e| e.1);
        let winner = feasible
            .min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(a.cmp(&b)))
            .or_else(|| (0..arms.len()).max_by(|&a, &b| q[a].total_cmp(&q[b])));
        if let Some(w) = winner {
            wins[w] += 1;
        }
    }
    let probs: Vec<f64> = wins
        .iter()
        .map(|w| *w as f64 / knobs.draws as f64)
        .collect();
    let (best, p) = probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, p)| (i, *p))?;
    if best == live || p < knobs.switch_probability {
        return None;
    }
    let (q, c, _) = estimates[best]?;
    let (lq, lc, _) = estimates[live]?;
    Some(proposal(
        view,
        &arms[best],
        PHASE_SWITCH,
        format!(
            "parameters {} are the cheapest acceptable arm in {:.0}% of posterior draws: quality \
             {q:.3} vs {lq:.3}, ${c:.6} vs ${lc:.6} per call under {}",
            describe(&arms[best]),
            p * 100.0,
            describe(&arms[live]),
        ),
        Some(TestResult {
            statistic: p,
            p_value: 1.0 - p,
        }),
        metrics(arms, &estimates, &probs, floor),
    ))
}

fn describe(arm: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = arm.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

fn metrics(
    arms: &[BTreeMap<String, String>],
    estimates: &[Option<(f64, f64, f64)>],
    probs: &[f64],
    floor: Option<f64>,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Some(f) = floor {
        m.insert("quality_floor".to_string(), f);
    }
    for (i, arm) in arms.iter().enumerate() {
        let name = describe(arm);
        if let Some((q, c, se)) = estimates[i] {
            m.insert(format!("quality:{name}"), q);
            m.insert(format!("quality_se:{name}"), se);
            m.insert(format!("cost_per_call_usd:{name}"), c);
        }
        if let Some(p) = probs.get(i) {
            m.insert(format!("p_best:{name}"), *p);
        }
    }
    m
}

fn proposal(
    view: &RouteView<'_>,
    arm: &BTreeMap<String, String>,
    phase: &str,
    why: String,
    test: Option<TestResult>,
    metrics: BTreeMap<String, f64>,
) -> Proposal {
    let mut params: BTreeMap<String, String> = arm
        .iter()
        .map(|(k, v)| (format!("{PARAM_SET_PREFIX}{k}"), v.clone()))
        .collect();
    params.insert(PARAM_PHASE.to_string(), phase.to_string());
    Proposal {
        strategy: Strategy::ParameterTuning,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_SET_PARAMS.to_string(),
        params,
        reason: format!("tuner: {why}"),
        evidence: evidence(
            if test.is_some() {
                "thompson_sampling"
            } else {
                "untried_arm"
            },
            test,
            metrics,
        ),
        caused_by: Vec::new(),
        trigger_time: view.trigger_time,
        job: None,
    }
}
