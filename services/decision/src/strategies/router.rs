//! Constrained Thompson sampling router: which of a route's allowed models should serve it.
//!
//! Per model, from its recent windows on the route: a Normal posterior of its mean quality
//! (feedback scores; the per-call spread estimated from the spread of window means), a Beta
//! posterior of its error rate, its observed cost per call and latency p95. Each posterior draw
//! picks the best *feasible* model (objective `min_cost`: the cheapest whose drawn quality is at
//! least the floor, whose drawn error rate is within its SLO and whose latency is within the
//! route's SLO; `max_quality`: the best within the latency SLO and cost ceiling); a model's
//! target share is the share of draws it wins (probability matching), capped by its
//! `max_share`. A model whose quality is not known yet (too few scored calls) is explored with a
//! small share, one at a time and only on routes that have feedback scores: a route without a
//! quality signal is never moved to a model whose quality is unknown.
//!
//! The router proposes one step at a time: the largest difference between a model's share and
//! its target, at most `limits.max_traffic_shift`, ignored below `router.min_step`. Each step
//! goes through the decision lifecycle (proposed/approved, applied, verified against the
//! route's windows before it, rolled back if worse), with the posteriors as its evidence.
//!
//! The quality guard: a serving model whose last windows are significantly below the floor
//! loses its traffic to the best known model at once (no cooldown, like a rollback).
//!
//! Deterministic: the draws come from a ChaCha generator seeded by the configured seed, the
//! route and the window time, so replaying the same windows gives the same decisions.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use llmopt_events::Strategy;
use llmopt_routing::{
    shift_traffic, targets_to_param, weight_of, ACTION_SHIFT_TRAFFIC, PARAM_FROM_MODEL,
    PARAM_FROM_PROVIDER, PARAM_MODEL, PARAM_PROVIDER, PARAM_SHIFT, PARAM_TARGETS,
};
use rand::distributions::Distribution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{Beta, ContinuousCDF, Normal};

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::config::{Objective, RoutePolicy};
use crate::history::{ModelKey, WindowPoint};
use crate::stats::TestResult;

/// Param naming the router's reason for a step (the same param as fail-back's phases).
pub use super::failover::PARAM_PHASE;
/// A step giving an unknown model its exploration share.
pub const PHASE_EXPLORE: &str = "explore";
/// A step towards the posterior's targets among known models.
pub const PHASE_EXPLOIT: &str = "exploit";
/// A step taking traffic off a model whose recent quality is below the floor.
pub const PHASE_GUARD: &str = "quality_guard";

/// Per-call spread of quality scores assumed until a model's windows show their own.
const PRIOR_QUALITY_SD: f64 = 0.15;
/// Bounds of the estimated per-call spread (a handful of windows can show almost none).
const QUALITY_SD_RANGE: (f64, f64) = (0.03, 0.5);
/// Fewest scored calls in the guard's windows before it judges a model.
const GUARD_MIN_SCORED: i64 = 10;
/// Shares below this are rounding.
const EPSILON: f64 = 1e-9;

/// What the router knows of one model on one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Provider and model.
    pub key: ModelKey,
    /// Current share of the route.
    pub weight: f64,
    /// Most of the route this model may get.
    pub max_share: f64,
    /// Calls over the posterior's windows.
    pub calls: i64,
    /// Failed calls over them.
    pub errors: i64,
    /// Calls with a quality score.
    pub scored: i64,
    /// Mean quality score.
    pub quality_mean: Option<f64>,
    /// Estimated per-call standard deviation of quality scores.
    pub quality_sd: f64,
    /// Cost per call (USD).
    pub cost_per_call: Option<f64>,
    /// Mean of the windows' latency p95 (ms).
    pub latency_p95_ms: Option<f64>,
    /// The model's error-rate SLO.
    pub error_slo: f64,
    /// Must not get traffic (an open circuit, or it breaches its SLO in the fleet).
    pub excluded: bool,
    /// May be explored while unknown (not when the guard took its traffic away recently).
    pub explorable: bool,
    /// Recent windows for the quality guard: scored calls and their mean.
    pub recent_quality: Option<(i64, f64)>,
    /// Mean quality of the windows before the recent ones: a model that met the floor there
    /// and misses it now regressed; one that missed it all along did not.
    pub earlier_quality: Option<f64>,
}

impl Arm {
    /// An arm built from the model's windows on the route, oldest first; `recent` are the last
    /// `guard_windows` of them.
    pub fn from_points(
        key: ModelKey,
        weight: f64,
        max_share: f64,
        error_slo: f64,
        points: &[&WindowPoint],
        guard_windows: usize,
    ) -> Self {
        let calls: i64 = points.iter().map(|p| p.count).sum();
        let errors: i64 = points.iter().map(|p| p.error_count).sum();
        let scored: i64 = points.iter().map(|p| p.quality_count).sum();
        let quality_sum: f64 = points.iter().map(|p| p.quality_sum).sum();
        let cost: f64 = points.iter().map(|p| p.cost_usd).sum();
        let quality_mean = (scored > 0).then(|| quality_sum / scored as f64);
        let quality_sd = quality_mean.map_or(PRIOR_QUALITY_SD, |m| per_call_sd(points, m));
        let with_calls: Vec<f64> = points
            .iter()
            .filter(|p| p.count > p.error_count)
            .map(|p| p.latency_p95_ms)
            .collect();
        let latency_p95_ms = (!with_calls.is_empty())
            .then(|| with_calls.iter().sum::<f64>() / with_calls.len() as f64);
        let split = points.len().saturating_sub(guard_windows);
        let (earlier, recent) = points.split_at(split);
        let earlier_scored: i64 = earlier.iter().map(|p| p.quality_count).sum();
        let earlier_quality = (earlier_scored > 0)
            .then(|| earlier.iter().map(|p| p.quality_sum).sum::<f64>() / earlier_scored as f64);
        let recent_scored: i64 = recent.iter().map(|p| p.quality_count).sum();
        let recent_quality = (recent_scored > 0).then(|| {
            (
                recent_scored,
                recent.iter().map(|p| p.quality_sum).sum::<f64>() / recent_scored as f64,
            )
        });
        Self {
            key,
            weight,
            max_share,
            calls,
            errors,
            scored,
            quality_mean,
            quality_sd,
            cost_per_call: (calls > 0).then(|| cost / calls as f64),
            latency_p95_ms,
            error_slo,
            excluded: false,
            explorable: true,
            recent_quality,
            earlier_quality,
        }
    }

    /// Whether the posterior knows enough of the model to route to it.
    pub fn known(&self, min_scored: i64) -> bool {
        self.scored >= min_scored && self.cost_per_call.is_some()
    }

    fn name(&self) -> String {
        format!("{}/{}", self.key.0, self.key.1)
    }
}

/// The per-call spread of quality scores: a window mean of n scores varies by sd²/n around the
/// model's mean, so n·(window mean − mean)² estimates sd² (pooled over the windows).
fn per_call_sd(points: &[&WindowPoint], mean: f64) -> f64 {
    let scored: Vec<&&WindowPoint> = points.iter().filter(|p| p.quality_count > 0).collect();
    if scored.len() < 3 {
        return PRIOR_QUALITY_SD;
    }
    let ss: f64 = scored
        .iter()
        .map(|p| {
            let n = p.quality_count as f64;
            n * (p.quality_sum / n - mean).powi(2)
        })
        .sum();
    (ss / (scored.len() - 1) as f64)
        .sqrt()
        .clamp(QUALITY_SD_RANGE.0, QUALITY_SD_RANGE.1)
}

/// The route's constraints and objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraints {
    /// Lowest acceptable mean quality.
    pub quality_floor: Option<f64>,
    /// Highest acceptable latency p95 (ms).
    pub latency_slo_p95_ms: Option<f64>,
    /// Highest acceptable cost per call (USD), for `max_quality`.
    pub max_cost_per_call_usd: Option<f64>,
    /// What to optimise.
    pub objective: Objective,
}

impl Constraints {
    /// The constraints of `policy`, with `floor` as its quality floor.
    pub fn of(policy: &RoutePolicy, floor: Option<f64>) -> Self {
        Self {
            quality_floor: floor,
            latency_slo_p95_ms: policy.latency_slo_p95_ms,
            max_cost_per_call_usd: policy.max_cost_per_call_usd,
            objective: policy.objective,
        }
    }
}

/// Router knobs taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    /// Posterior draws.
    pub draws: usize,
    /// Scored calls that make a model's quality known.
    pub min_scored_calls: i64,
    /// Share of an explored model.
    pub explore_share: f64,
    /// Smallest step.
    pub min_step: f64,
    /// Largest step.
    pub max_shift: f64,
    /// Significance level of the quality guard.
    pub alpha: f64,
    /// Safety margin above the floor: a drawn quality must clear `floor + floor_margin` (the
    /// floor is the route's; a cheap model whose quality sits right at it would otherwise take
    /// most of the route in the draws where it clears it, and noise puts the route under).
    pub floor_margin: f64,
    /// Seed of the draws.
    pub seed: u64,
}

/// The seed of one evaluation: the configured seed, the route and the time.
pub fn draw_seed(seed: u64, app: &str, route: &str, time: i64) -> u64 {
    // FNV-1a: stable across runs and platforms (std's SipHash keys are fixed too, but FNV
    // keeps the value independent of std's choice).
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    seed.hash(&mut h);
    app.hash(&mut h);
    route.hash(&mut h);
    time.hash(&mut h);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Each known, eligible arm's share of `draws` posterior draws in which it is the best feasible
/// model (zero for the others and for the arms in `skip`).
pub fn win_probabilities(arms: &[Arm], c: &Constraints, knobs: &Knobs, skip: &[bool]) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(knobs.seed);
    let eligible: Vec<usize> = (0..arms.len())
        .filter(|&i| {
            !arms[i].excluded
                && arms[i].known(knobs.min_scored_calls)
                && !skip.get(i).copied().unwrap_or(false)
        })
        .collect();
    let mut wins = vec![0usize; arms.len()];
    if eligible.is_empty() {
        return vec![0.0; arms.len()];
    }
    let quality: Vec<Option<Normal>> = arms
        .iter()
        .map(|a| {
            let mean = a.quality_mean?;
            let se = a.quality_sd / (a.scored.max(1) as f64).sqrt();
            Normal::new(mean, se.max(1e-6)).ok()
        })
        .collect();
    let errors: Vec<Option<Beta>> = arms
        .iter()
        .map(|a| {
            let ok = (a.calls - a.errors).max(0) as f64;
            Beta::new(1.0 + a.errors as f64, 1.0 + ok).ok()
        })
        .collect();
    for _ in 0..knobs.draws {
        let mut best: Option<(usize, f64)> = None;
        let mut best_q: Option<(usize, f64)> = None;
        for &i in &eligible {
            let a = &arms[i];
            let q = quality[i].as_ref().map_or(0.0, |d| d.sample(&mut rng));
            let e = errors[i].as_ref().map_or(0.0, |d| d.sample(&mut rng));
            if best_q.is_none_or(|(_, bq)| q > bq) {
                best_q = Some((i, q));
            }
            let feasible = c.quality_floor.is_none_or(|f| q >= f + knobs.floor_margin)
                && e <= a.error_slo
                && c.latency_slo_p95_ms
                    .is_none_or(|slo| a.latency_p95_ms.is_none_or(|l| l <= slo));
            if !feasible {
                continue;
            }
            let cost = a.cost_per_call.unwrap_or(f64::INFINITY);
            let score = match c.objective {
                Objective::MinCost => -cost,
                Objective::MaxQuality => {
                    if c.max_cost_per_call_usd.is_some_and(|m| cost > m) {
                        continue;
                    }
                    q
                }
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        // Nothing feasible: the best quality drawn is the safest place.
        if let Some((i, _)) = best.or(best_q) {
            wins[i] += 1;
        }
    }
    wins.iter()
        .map(|w| *w as f64 / knobs.draws as f64)
        .collect()
}

/// The share each arm should have, and the win probabilities it rests on: exploration shares
/// first (unknown arms), then the win probabilities over the rest; an arm at its `max_share`
/// is capped and the rest is matched to the win probabilities of the draws without it (the
/// best feasible model among the others), and so on. `None` when the router must leave the
/// route alone: an excluded model still serves it (failover owns it), no arm is known, or the
/// route has no quality scores at all.
pub fn targets(arms: &[Arm], c: &Constraints, knobs: &Knobs) -> Option<(Vec<f64>, Vec<f64>)> {
    if arms.iter().any(|a| a.excluded && a.weight > EPSILON) {
        return None;
    }
    if !arms.iter().any(|a| a.scored > 0) {
        return None;
    }
    let mut target = vec![0.0; arms.len()];
    let mut fixed = 0.0;
    let mut exploring = arms
        .iter()
        .filter(|a| !a.known(knobs.min_scored_calls) && a.weight > EPSILON)
        .count();
    for (i, a) in arms.iter().enumerate() {
        if a.known(knobs.min_scored_calls) || a.excluded {
            continue;
        }
        // An unknown model keeps what it has while its quality is learned; one more is
        // explored when none is.
        let share = if a.weight > EPSILON {
            a.weight.max(knobs.explore_share.min(a.max_share))
        } else if exploring == 0 && knobs.explore_share > 0.0 && a.explorable {
            exploring += 1;
            knobs.explore_share.min(a.max_share)
        } else {
            0.0
        };
        target[i] = share;
        fixed += share;
    }
    let mut left = (1.0 - fixed).max(0.0);
    let mut skip = vec![false; arms.len()];
    let mut first = None;
    for _ in 0..arms.len() {
        let probs = win_probabilities(arms, c, knobs, &skip);
        if probs.iter().all(|p| *p <= 0.0) {
            break;
        }
        let mut given = 0.0;
        for (i, p) in probs.iter().enumerate().filter(|(_, p)| **p > 0.0) {
            let want = left * p;
            let room = (arms[i].max_share - target[i]).max(0.0);
            let got = want.min(room);
            target[i] += got;
            given += got;
            if want >= room - EPSILON {
                skip[i] = true;
            }
        }
        first.get_or_insert(probs);
        left -= given;
        if left <= EPSILON {
            break;
        }
    }
    let probs = first?;
    if left > EPSILON {
        // Every feasible arm is at its cap: the rest stays where it is.
        let total: f64 = arms.iter().map(|a| a.weight).sum();
        for (i, a) in arms.iter().enumerate() {
            target[i] += left * a.weight / total.max(EPSILON);
        }
    }
    Some((target, probs))
}

/// One step from the current shares towards `target`: from the most over-served arm to the
/// most under-served one, at most `max_shift`; `None` below `min_step`.
pub fn step(arms: &[Arm], target: &[f64], knobs: &Knobs) -> Option<(usize, usize, f64)> {
    let diff: Vec<f64> = arms.iter().zip(target).map(|(a, t)| t - a.weight).collect();
    let to = (0..arms.len()).max_by(|&a, &b| diff[a].total_cmp(&diff[b]))?;
    let from = (0..arms.len()).min_by(|&a, &b| diff[a].total_cmp(&diff[b]))?;
    let shift = diff[to].min(-diff[from]).min(knobs.max_shift);
    (to != from && shift + EPSILON >= knobs.min_step).then_some((from, to, shift))
}

/// The quality guard: the serving arm whose recent windows are most significantly below the
/// floor (one-sided z-test at `alpha`), with the test's result.
pub fn guard(arms: &[Arm], floor: Option<f64>, knobs: &Knobs) -> Option<(usize, TestResult)> {
    let floor = floor?;
    let normal = Normal::new(0.0, 1.0).ok()?;
    arms.iter()
        .enumerate()
        .filter(|(_, a)| a.weight > EPSILON)
        .filter_map(|(i, a)| {
            let (n, mean) = a.recent_quality?;
            if n < GUARD_MIN_SCORED {
                return None;
            }
            let z = (floor - mean) / (a.quality_sd / (n as f64).sqrt()).max(1e-9);
            let p = 1.0 - normal.cdf(z);
            (p < knobs.alpha).then_some((
                i,
                TestResult {
                    statistic: z,
                    p_value: p,
                },
            ))
        })
        .max_by(|a, b| a.1.statistic.total_cmp(&b.1.statistic))
}

/// Where the guard sends a failing arm's traffic: among the known, eligible arms below their
/// `max_share` whose mean quality is at or above the floor, the cheapest (`min_cost`) or the
/// best (`max_quality`). `None` when no known arm meets the floor: moving between models that
/// all miss it would not help, and the route explores instead.
pub fn guard_destination(
    arms: &[Arm],
    from: usize,
    c: &Constraints,
    knobs: &Knobs,
) -> Option<usize> {
    let floor = c.quality_floor?;
    let q = |i: usize| arms[i].quality_mean.unwrap_or(0.0);
    let cost = |i: usize| arms[i].cost_per_call.unwrap_or(f64::INFINITY);
    let good = (0..arms.len())
        .filter(|&i| i != from && !arms[i].excluded && arms[i].known(knobs.min_scored_calls))
        .filter(|&i| arms[i].max_share - arms[i].weight > EPSILON)
        .filter(|&i| q(i) >= floor);
    match c.objective {
        Objective::MinCost => good.min_by(|&a, &b| cost(a).total_cmp(&cost(b))),
        Objective::MaxQuality => good.max_by(|&a, &b| q(a).total_cmp(&q(b))),
    }
}

/// A router step as a decision proposal: `shift` of the route from `arms[from]` to `arms[to]`.
#[allow(clippy::too_many_arguments)]
pub fn proposal(
    view: &RouteView<'_>,
    arms: &[Arm],
    probs: &[f64],
    c: &Constraints,
    (from, to, shift): (usize, usize, f64),
    phase: &str,
    test: Option<TestResult>,
    caused_by: Vec<String>,
) -> Option<Proposal> {
    let (f, t) = (&arms[from], &arms[to]);
    let new_targets = shift_traffic(
        &view.targets,
        (&f.key.0, &f.key.1),
        (&t.key.0, &t.key.1),
        shift,
    )
    .ok()?;
    let mut params = BTreeMap::new();
    params.insert(PARAM_FROM_PROVIDER.to_string(), f.key.0.clone());
    params.insert(PARAM_FROM_MODEL.to_string(), f.key.1.clone());
    params.insert(PARAM_PROVIDER.to_string(), t.key.0.clone());
    params.insert(PARAM_MODEL.to_string(), t.key.1.clone());
    params.insert(PARAM_SHIFT.to_string(), fmt_num(shift));
    params.insert(PARAM_TARGETS.to_string(), targets_to_param(&new_targets));
    params.insert(PARAM_PHASE.to_string(), phase.to_string());
    let mut metrics = BTreeMap::new();
    if let Some(floor) = c.quality_floor {
        metrics.insert("quality_floor".to_string(), floor);
    }
    for (a, p) in arms.iter().zip(probs) {
        let name = a.name();
        metrics.insert(format!("p_best:{name}"), *p);
        metrics.insert(format!("share:{name}"), a.weight);
        metrics.insert(format!("scored:{name}"), a.scored as f64);
        if let Some(q) = a.quality_mean {
            metrics.insert(format!("quality:{name}"), q);
        }
        if let Some(cost) = a.cost_per_call {
            metrics.insert(format!("cost_per_call_usd:{name}"), cost);
        }
        if a.calls > 0 {
            metrics.insert(
                format!("error_rate:{name}"),
                a.errors as f64 / a.calls as f64,
            );
        }
    }
    let describe = |a: &Arm| {
        let q = a
            .quality_mean
            .map_or("unknown".to_string(), |q| format!("{q:.3}"));
        let cost = a
            .cost_per_call
            .map_or("unknown".to_string(), |c| format!("${c:.6}"));
        format!(
            "{} (quality {q} over {} scores, {cost}/call)",
            a.name(),
            a.scored
        )
    };
    let why = match phase {
        PHASE_EXPLORE => format!(
            "exploring {}: its quality is unknown; {} of the route while it is learned",
            describe(t),
            fmt_num(weight_of(&new_targets, &t.key.0, &t.key.1)),
        ),
        PHASE_GUARD => format!(
            "{}'s last windows are below the quality floor {} (z={:.2}); moving to {}",
            describe(f),
            c.quality_floor.map_or("-".to_string(), fmt_num),
            test.map_or(f64::NAN, |r| r.statistic),
            describe(t),
        ),
        _ => format!(
            "{} is the best feasible model in {:.0}% of posterior draws ({:.0}% for {}); {}",
            describe(t),
            probs[to] * 100.0,
            probs[from] * 100.0,
            describe(f),
            match c.objective {
                Objective::MinCost => "minimising cost subject to the route's constraints",
                Objective::MaxQuality => "maximising quality subject to the route's constraints",
            },
        ),
    };
    let statistic = test.unwrap_or(TestResult {
        statistic: probs[to],
        p_value: 1.0 - probs[to],
    });
    Some(Proposal {
        strategy: Strategy::Experiment,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_SHIFT_TRAFFIC.to_string(),
        params,
        reason: format!("router: moving {} of traffic: {why}", fmt_num(shift)),
        evidence: evidence(
            if phase == PHASE_GUARD {
                "z_quality_floor"
            } else {
                "thompson_sampling"
            },
            Some(statistic),
            metrics,
        ),
        caused_by,
        trigger_time: view.trigger_time,
        job: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(model: &str, weight: f64, scored: i64, quality: f64, cost: f64) -> Arm {
        Arm {
            key: ("p".to_string(), model.to_string()),
            weight,
            max_share: 1.0,
            calls: scored * 2,
            errors: 0,
            scored,
            quality_mean: (scored > 0).then_some(quality),
            quality_sd: 0.1,
            cost_per_call: (scored > 0).then_some(cost),
            latency_p95_ms: Some(500.0),
            error_slo: 0.05,
            excluded: false,
            explorable: true,
            recent_quality: None,
            earlier_quality: None,
        }
    }

    fn knobs() -> Knobs {
        Knobs {
            draws: 400,
            min_scored_calls: 30,
            explore_share: 0.05,
            min_step: 0.05,
            max_shift: 0.5,
            alpha: 0.01,
            floor_margin: 0.0,
            seed: 7,
        }
    }

    fn floor(f: f64) -> Constraints {
        Constraints {
            quality_floor: Some(f),
            latency_slo_p95_ms: None,
            max_cost_per_call_usd: None,
            objective: Objective::MinCost,
        }
    }

    #[test]
    fn the_cheapest_model_clearly_above_the_floor_wins_every_draw() {
        let arms = [
            arm("big", 1.0, 1000, 0.88, 0.01),
            arm("small", 0.0, 500, 0.86, 0.001),
        ];
        let p = win_probabilities(&arms, &floor(0.80), &knobs(), &[]);
        assert_eq!(p, vec![0.0, 1.0]);
        // Below the floor it never wins; the expensive model is the feasible one.
        let p = win_probabilities(&arms, &floor(0.885), &knobs(), &[]);
        assert_eq!(p, vec![1.0, 0.0]);
    }

    #[test]
    fn an_uncertain_model_near_the_floor_gets_a_share_matching_its_probability() {
        // 40 scores, sd 0.1: standard error 0.016; mean 0.01 above the floor: P ~ 0.73.
        let arms = [
            arm("big", 1.0, 1000, 0.90, 0.01),
            arm("small", 0.0, 40, 0.86, 0.001),
        ];
        let p = win_probabilities(&arms, &floor(0.85), &knobs(), &[]);
        assert!((0.6..0.85).contains(&p[1]), "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_same_seed_draws_the_same_probabilities() {
        let arms = [
            arm("big", 1.0, 1000, 0.90, 0.01),
            arm("small", 0.0, 40, 0.86, 0.001),
        ];
        let a = win_probabilities(&arms, &floor(0.85), &knobs(), &[]);
        let b = win_probabilities(&arms, &floor(0.85), &knobs(), &[]);
        assert_eq!(a, b);
        assert_eq!(
            draw_seed(1, "app", "chat", 60_000),
            draw_seed(1, "app", "chat", 60_000)
        );
        assert_ne!(
            draw_seed(1, "app", "chat", 60_000),
            draw_seed(1, "app", "chat", 120_000)
        );
    }

    #[test]
    fn one_unknown_model_is_explored_at_a_time_and_only_with_a_quality_signal() {
        let arms = [
            arm("big", 1.0, 1000, 0.88, 0.01),
            arm("new-a", 0.0, 0, 0.0, 0.0),
            arm("new-b", 0.0, 0, 0.0, 0.0),
        ];
        let (t, _) = targets(&arms, &floor(0.80), &knobs()).unwrap();
        assert_eq!(t, vec![0.95, 0.05, 0.0]);
        let (from, to, shift) = step(&arms, &t, &knobs()).unwrap();
        assert_eq!((from, to), (0, 1));
        assert!((shift - 0.05).abs() < 1e-9);
        // No scores anywhere: nothing moves.
        let mut silent = arms.clone();
        silent[0].scored = 0;
        silent[0].quality_mean = None;
        assert!(targets(&silent, &floor(0.80), &knobs()).is_none());
        // A model the guard took traffic from waits before it is explored again.
        let mut waiting = arms.clone();
        waiting[1].explorable = false;
        let (t, _) = targets(&waiting, &floor(0.80), &knobs()).unwrap();
        assert_eq!(t, vec![0.95, 0.0, 0.05]);
    }

    #[test]
    fn a_capped_model_leaves_the_rest_to_the_best_of_the_others() {
        let mut arms = [
            arm("big", 1.0, 1000, 0.90, 0.01),
            arm("mid", 0.0, 1000, 0.87, 0.004),
            arm("small", 0.0, 1000, 0.86, 0.001),
        ];
        arms[2].max_share = 0.3;
        let (t, p) = targets(&arms, &floor(0.80), &knobs()).unwrap();
        assert_eq!(p, vec![0.0, 0.0, 1.0]);
        assert!((t[2] - 0.3).abs() < 1e-9 && (t[1] - 0.7).abs() < 1e-9 && t[0] == 0.0);
        // Steps go from the most over-served to the most under-served, capped by max_shift.
        assert_eq!(step(&arms, &t, &knobs()), Some((0, 1, 0.5)));
    }

    #[test]
    fn an_excluded_model_holding_traffic_leaves_the_route_to_failover() {
        let mut arms = [
            arm("big", 1.0, 1000, 0.90, 0.01),
            arm("small", 0.0, 500, 0.86, 0.001),
        ];
        arms[0].excluded = true;
        assert!(targets(&arms, &floor(0.80), &knobs()).is_none());
        // Excluded without traffic: it just gets none.
        arms[0].weight = 0.0;
        arms[1].weight = 1.0;
        let (t, _) = targets(&arms, &floor(0.80), &knobs()).unwrap();
        assert_eq!(t, vec![0.0, 1.0]);
    }

    #[test]
    fn the_guard_fires_on_a_serving_model_significantly_below_the_floor() {
        let mut arms = [
            arm("big", 0.0, 1000, 0.90, 0.01),
            arm("small", 1.0, 1000, 0.86, 0.001),
        ];
        arms[1].recent_quality = Some((60, 0.80));
        let (i, r) = guard(&arms, Some(0.84), &knobs()).expect("guard");
        assert_eq!(i, 1);
        assert!(r.p_value < 0.01, "{r:?}");
        assert_eq!(guard_destination(&arms, 1, &floor(0.84), &knobs()), Some(0));
        // A dip within noise does not.
        arms[1].recent_quality = Some((60, 0.83));
        assert!(guard(&arms, Some(0.84), &knobs()).is_none());
        // Nor too few scores, nor a model without traffic, nor a route without a floor.
        arms[1].recent_quality = Some((5, 0.5));
        assert!(guard(&arms, Some(0.84), &knobs()).is_none());
        arms[1].recent_quality = Some((60, 0.5));
        assert!(guard(&arms, None, &knobs()).is_none());
        arms[1].weight = 0.0;
        assert!(guard(&arms, Some(0.84), &knobs()).is_none());
    }

    #[test]
    fn max_quality_picks_the_best_model_under_the_cost_ceiling() {
        let arms = [
            arm("big", 1.0, 1000, 0.92, 0.01),
            arm("mid", 0.0, 1000, 0.88, 0.004),
            arm("small", 0.0, 1000, 0.84, 0.001),
        ];
        let c = Constraints {
            quality_floor: None,
            latency_slo_p95_ms: None,
            max_cost_per_call_usd: Some(0.005),
            objective: Objective::MaxQuality,
        };
        assert_eq!(
            win_probabilities(&arms, &c, &knobs(), &[]),
            vec![0.0, 1.0, 0.0]
        );
    }

    #[test]
    fn a_model_over_the_latency_slo_is_not_feasible() {
        let mut arms = [
            arm("big", 1.0, 1000, 0.90, 0.01),
            arm("small", 0.0, 1000, 0.88, 0.001),
        ];
        arms[1].latency_p95_ms = Some(4000.0);
        let c = Constraints {
            latency_slo_p95_ms: Some(2000.0),
            ..floor(0.8)
        };
        assert_eq!(win_probabilities(&arms, &c, &knobs(), &[]), vec![1.0, 0.0]);
    }

    #[test]
    fn a_margin_above_the_floor_keeps_a_model_sitting_at_it_from_taking_the_route() {
        // 0.838 over 500 scores vs floor 0.836: it clears the bare floor in two thirds of the
        // draws, floor + 0.005 in about a quarter.
        let arms = [
            arm("good", 1.0, 5000, 0.86, 0.01),
            arm("edge", 0.0, 500, 0.838, 0.001),
        ];
        let bare = win_probabilities(&arms, &floor(0.836), &knobs(), &[]);
        let margin = Knobs {
            floor_margin: 0.005,
            ..knobs()
        };
        let safe = win_probabilities(&arms, &floor(0.836), &margin, &[]);
        assert!(bare[1] > 0.55, "{bare:?}");
        assert!(safe[1] < 0.4, "{safe:?}");
    }
}
