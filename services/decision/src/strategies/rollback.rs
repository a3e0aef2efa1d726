//! Regression rollback: a route that got significantly and materially worse after a config
//! change is rolled back to the previous version.
//!
//! The before/after [`compare`] is also what verifies the core's own changes (a failed
//! verification rolls back), so "worse" means the same thing everywhere.

use std::collections::BTreeMap;

use llmopt_events::{RouteTarget, Strategy};
use llmopt_routing::{targets_to_param, ACTION_ROLLBACK, PARAM_TARGETS, PARAM_TARGET_VERSION};
use serde::{Deserialize, Serialize};

use super::{evidence, fmt_num, Proposal, RouteView};
use crate::config::DecisionConfig;
use crate::history::RouteWindow;
use crate::stats::{
    binomial_greater, one_sample_t_greater, two_proportion_z_greater, welch_t_greater, TestResult,
};

/// Outcome of comparing a period after a change with the baseline before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Whether some metric got significantly and materially worse.
    pub worse: bool,
    /// The deciding test (the worst metric, or the most suspicious one when none is worse) and
    /// every metric's before/after values and p-values.
    pub evidence: llmopt_events::Evidence,
    /// One line for the decision's reason.
    pub summary: String,
}

struct MetricTest {
    name: &'static str,
    test: &'static str,
    before: f64,
    after: f64,
    result: Option<TestResult>,
    material: bool,
}

fn rel_worse_up(before: f64, after: f64, min_rel: f64) -> bool {
    after > before * (1.0 + min_rel)
}

/// Compares `after` with `before`: error rate by pooled two-proportion z-test on the summed
/// counts, latency p95 and quality mean by one-sided Welch t-tests over per-window values. A
/// metric is worse when its test is significant at `alpha` and the change exceeds the material
/// thresholds. `None` when no test can run (no calls on one side).
pub fn compare(
    before: &[RouteWindow],
    after: &[RouteWindow],
    cfg: &DecisionConfig,
) -> Option<Comparison> {
    let mut tests = vec![error_rate_test(before, after, cfg)?];
    let min_rel = cfg.regression.min_relative_change;

    let (l1, l2) = (latencies(before), latencies(after));
    if let (Some(m1), Some(m2)) = (crate::stats::mean(&l1), crate::stats::mean(&l2)) {
        tests.push(MetricTest {
            name: "latency_p95_ms",
            test: "welch_t",
            before: m1,
            after: m2,
            result: welch_t_greater(&l1, &l2, 0.0),
            material: rel_worse_up(m1, m2, min_rel),
        });
    }

    let (q1, q2) = (qualities(before), qualities(after));
    if let (Some(m1), Some(m2)) = (crate::stats::mean(&q1), crate::stats::mean(&q2)) {
        // Worse is lower: H1 is mean(before) − mean(after) > 0.
        tests.push(MetricTest {
            name: "quality_mean",
            test: "welch_t",
            before: m1,
            after: m2,
            result: welch_t_greater(&q2, &q1, 0.0),
            material: m2 < m1 * (1.0 - min_rel),
        });
    }

    conclude(&tests, before.len(), after.len(), cfg.alpha)
}

/// Per-window latency p95 of the windows with calls.
fn latencies(ws: &[RouteWindow]) -> Vec<f64> {
    ws.iter()
        .filter(|w| w.count > 0)
        .map(|w| w.latency_p95_ms)
        .collect()
}

/// Per-window mean quality of the windows with scores.
fn qualities(ws: &[RouteWindow]) -> Vec<f64> {
    ws.iter().filter_map(|w| w.quality_mean()).collect()
}

/// The error rate after against before: pooled two-proportion z-test on the summed counts.
fn error_rate_test(
    before: &[RouteWindow],
    after: &[RouteWindow],
    cfg: &DecisionConfig,
) -> Option<MetricTest> {
    let sum = |ws: &[RouteWindow]| -> (i64, i64) {
        ws.iter()
            .fold((0, 0), |(e, n), w| (e + w.error_count, n + w.count))
    };
    let (e1, n1) = sum(before);
    let (e2, n2) = sum(after);
    if n1 <= 0 || n2 <= 0 {
        return None;
    }
    let (r1, r2) = (e1 as f64 / n1 as f64, e2 as f64 / n2 as f64);
    Some(MetricTest {
        name: "error_rate",
        test: "two_proportion_z",
        before: r1,
        after: r2,
        result: two_proportion_z_greater(e1, n1, e2, n2),
        material: rel_worse_up(r1, r2, cfg.regression.min_relative_change)
            && r2 - r1 >= cfg.regression.min_error_rate_increase,
    })
}

/// Verification of a router step against the route's own constraints: the error rate worse as
/// in [`compare`] *and* above the error SLO; quality significantly lower than before *and* below the floor; latency p95
/// significantly higher than before *and* above the SLO (Welch's t-tests over per-window
/// values). Moving to a cheaper model that is a little slower or a little worse, within the
/// route's constraints, is what the router is for, not a regression; and a route that was
/// already below its floor is not made worse by a step that does not lower it.
pub fn compare_constraints(
    before: &[RouteWindow],
    after: &[RouteWindow],
    cfg: &DecisionConfig,
    quality_floor: Option<f64>,
    latency_slo_p95_ms: Option<f64>,
) -> Option<Comparison> {
    // Errors: worse as in `compare`, and above the SLO (a rise within the SLO is a trade the
    // route's constraints allow).
    let mut errors = error_rate_test(before, after, cfg)?;
    errors.name = "error_rate_above_slo";
    errors.material = errors.material && errors.after > cfg.error_slo.default_max_error_rate;
    let mut tests = vec![errors];
    let (q1, q2) = (qualities(before), qualities(after));
    if let (Some(floor), Some(m1), Some(m2)) = (
        quality_floor,
        crate::stats::mean(&q1),
        crate::stats::mean(&q2),
    ) {
        // Under the floor means significantly under it (one-sample t-test of the after
        // windows against the floor), not a noisy window mean that dips below it.
        let neg: Vec<f64> = q2.iter().map(|q| -q).collect();
        let under = one_sample_t_greater(&neg, -floor).is_some_and(|r| r.significant(cfg.alpha));
        tests.push(MetricTest {
            name: "quality_mean_below_floor",
            test: "welch_t",
            before: m1,
            after: m2,
            result: welch_t_greater(&q2, &q1, 0.0),
            material: m2 < floor && under,
        });
    }
    let (l1, l2) = (latencies(before), latencies(after));
    if let (Some(slo), Some(m1), Some(m2)) = (
        latency_slo_p95_ms,
        crate::stats::mean(&l1),
        crate::stats::mean(&l2),
    ) {
        let over = one_sample_t_greater(&l2, slo).is_some_and(|r| r.significant(cfg.alpha));
        tests.push(MetricTest {
            name: "latency_p95_ms_above_slo",
            test: "welch_t",
            before: m1,
            after: m2,
            result: welch_t_greater(&l1, &l2, 0.0),
            material: m2 > slo && over,
        });
    }
    conclude(&tests, before.len(), after.len(), cfg.alpha)
}

/// Per-call spread of quality scores a trial's lower bound assumes.
const TRIAL_SCORE_SD: f64 = 0.15;

/// Verification of a parameter trial: an experiment the route did not need, so it is given up
/// as soon as the route's measured quality since the change (scored calls pooled over at least
/// `min_windows` windows) is not clearly above the floor: its mean less one standard error
/// under it, significant or not. Waiting for significance would keep a route a little under
/// its floor for as long as it takes to prove it. `None` when the trial holds (or too few
/// windows have passed).
pub fn trial_under_floor(
    after: &[RouteWindow],
    floor: f64,
    min_windows: usize,
) -> Option<Comparison> {
    let scored: Vec<&RouteWindow> = after.iter().filter(|w| w.quality_count > 0).collect();
    if scored.len() < min_windows {
        return None;
    }
    let n: i64 = scored.iter().map(|w| w.quality_count).sum();
    let mean = scored.iter().map(|w| w.quality_sum).sum::<f64>() / n as f64;
    let lower = mean - TRIAL_SCORE_SD / (n as f64).sqrt();
    if lower >= floor {
        return None;
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("windows_after".to_string(), scored.len() as f64);
    metrics.insert("scored_after".to_string(), n as f64);
    metrics.insert("quality_mean_after".to_string(), mean);
    metrics.insert("quality_lower_bound_after".to_string(), lower);
    metrics.insert("quality_floor".to_string(), floor);
    Some(Comparison {
        worse: true,
        evidence: evidence("mean_below_floor", None, metrics),
        summary: format!(
            "trial quality {} (lower bound {}) not clearly above the floor {} over {} scored calls",
            fmt_num((mean * 1e4).round() / 1e4),
            fmt_num((lower * 1e4).round() / 1e4),
            fmt_num(floor),
            n
        ),
    })
}

/// Calls a fail-back step needs on the returning model before it can hold.
pub const FAILBACK_MIN_CALLS: i64 = 10;

/// Verification of a fail-back step (a circuit breaker's half-open trial): the returning
/// model's own calls since the change against its error-rate SLO (exact binomial test). Worse
/// when significantly above the SLO; `None` while it has had fewer than [`FAILBACK_MIN_CALLS`]
/// calls, so a probe never holds on no evidence.
pub fn failback_check(after: &[RouteWindow], slo: f64, alpha: f64) -> Option<Comparison> {
    let errors: i64 = after.iter().map(|w| w.error_count).sum();
    let calls: i64 = after.iter().map(|w| w.count).sum();
    if calls < FAILBACK_MIN_CALLS {
        return None;
    }
    let result = binomial_greater(errors, calls, slo);
    let rate = errors as f64 / calls as f64;
    let worse = rate > slo && result.is_some_and(|r| r.significant(alpha));
    let mut metrics = BTreeMap::new();
    metrics.insert("windows_after".to_string(), after.len() as f64);
    metrics.insert("calls_after".to_string(), calls as f64);
    metrics.insert("error_rate_after".to_string(), rate);
    metrics.insert("error_slo".to_string(), slo);
    Some(Comparison {
        worse,
        evidence: evidence("binomial_exact", result, metrics),
        summary: format!(
            "error rate {} over {calls} calls against the SLO {} (p={:.3e}{})",
            fmt_num((rate * 1e4).round() / 1e4),
            fmt_num(slo),
            result.map_or(1.0, |r| r.p_value),
            if worse {
                ", still failing"
            } else {
                ", within it"
            }
        ),
    })
}

/// Whether any test is significant at `alpha` and material, with the deciding test as evidence.
fn conclude(tests: &[MetricTest], before: usize, after: usize, alpha: f64) -> Option<Comparison> {
    let is_worse = |t: &MetricTest| t.material && t.result.is_some_and(|r| r.significant(alpha));
    let mut metrics = BTreeMap::new();
    metrics.insert("windows_before".to_string(), before as f64);
    metrics.insert("windows_after".to_string(), after as f64);
    for t in tests {
        metrics.insert(format!("{}_before", t.name), t.before);
        metrics.insert(format!("{}_after", t.name), t.after);
        if let Some(r) = t.result {
            metrics.insert(format!("{}_p_value", t.name), r.p_value);
        }
    }
    let p_of = |t: &MetricTest| t.result.map_or(1.0, |r| r.p_value);
    let worse = tests.iter().any(is_worse);
    let deciding = tests
        .iter()
        .filter(|t| !worse || is_worse(t))
        .min_by(|a, b| p_of(a).total_cmp(&p_of(b)))?;
    let summary = format!(
        "{} {} -> {} (p={:.3e}{})",
        deciding.name,
        fmt_num(deciding.before),
        fmt_num(deciding.after),
        p_of(deciding),
        if worse {
            ", significant and material"
        } else {
            ", not worse"
        }
    );
    Some(Comparison {
        worse,
        evidence: evidence(deciding.test, deciding.result, metrics),
        summary,
    })
}

/// A config change made outside the core, waiting for its evaluation windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// Id of the change.
    pub change_id: String,
    /// Version it introduced.
    pub version: i64,
    /// Version it replaced (the rollback target).
    pub previous_version: Option<i64>,
    /// Targets of the previous version, if known.
    pub previous_targets: Option<Vec<RouteTarget>>,
    /// Event time of the change.
    pub change_time: i64,
}

/// Outcome of a watch at one point in time.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchOutcome {
    /// Not enough windows after the change yet.
    Pending,
    /// Evaluated: no significant and material regression (or no rollback target).
    Fine,
    /// Evaluated: roll back.
    Rollback(Box<Proposal>),
}

/// Evaluates a watch once its `evaluation_windows` closed windows after the change exist.
pub fn evaluate(view: &RouteView<'_>, watch: &Watch) -> WatchOutcome {
    let cfg = view.config;
    let Some(after) = view
        .history
        .windows_after(watch.change_time, cfg.evaluation_windows)
    else {
        return WatchOutcome::Pending;
    };
    let before = view
        .history
        .windows_before(watch.change_time, cfg.baseline_windows);
    let (Some(cmp), Some(prev), Some(prev_targets)) = (
        compare(&before, &after, cfg),
        watch.previous_version,
        &watch.previous_targets,
    ) else {
        return WatchOutcome::Fine;
    };
    if !cmp.worse {
        return WatchOutcome::Fine;
    }
    let mut params = BTreeMap::new();
    params.insert(PARAM_TARGET_VERSION.to_string(), prev.to_string());
    params.insert(PARAM_TARGETS.to_string(), targets_to_param(prev_targets));
    params.insert("from_version".to_string(), watch.version.to_string());
    let mut caused_by = vec![watch.change_id.clone()];
    caused_by.extend(after.iter().flat_map(|w| w.event_ids.iter().cloned()));
    WatchOutcome::Rollback(Box::new(Proposal {
        strategy: Strategy::RegressionRollback,
        app: view.app.to_string(),
        route: view.route.to_string(),
        action: ACTION_ROLLBACK.to_string(),
        params,
        reason: format!(
            "route worse after change {} (v{}): {}; rolling back to v{prev}",
            watch.change_id, watch.version, cmp.summary
        ),
        evidence: cmp.evidence,
        caused_by,
        trigger_time: view.trigger_time,
        job: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::window;
    use crate::history::History;
    use llmopt_events::RouteTarget;

    fn view<'a>(h: &'a History, cfg: &'a DecisionConfig) -> RouteView<'a> {
        RouteView {
            app: "app",
            route: "chat",
            history: h.route("app", "chat").unwrap(),
            targets: vec![],
            version: Some(2),
            config: cfg,
            policy: None,
            trigger_time: 0,
        }
    }

    fn watch() -> Watch {
        Watch {
            change_id: "app/chat/v2".into(),
            version: 2,
            previous_version: Some(1),
            previous_targets: Some(vec![RouteTarget {
                provider: "p".into(),
                model: "old".into(),
                weight: 1.0,
            }]),
            change_time: 5 * 60_000,
        }
    }

    /// Five baseline minutes, the change at minute 5, then `after` minutes (+1 still open).
    fn history(after: i64, errors_after: i64, p95_after: f64, q_after: f64) -> History {
        let mut h = History::new(100);
        let jitter = [0.0, 10.0, -10.0, 5.0, -5.0, 8.0, -8.0, 3.0];
        for m in 0..5 {
            h.insert(&window(
                "chat",
                "p",
                "m",
                m,
                1000,
                10,
                500.0 + jitter[m as usize],
                Some(0.8 + jitter[m as usize] / 1000.0),
            ));
        }
        for m in 5..5 + after + 1 {
            let j = jitter[(m % 8) as usize];
            h.insert(&window(
                "chat",
                "p",
                "m",
                m,
                1000,
                errors_after,
                p95_after + j,
                Some(q_after + j / 1000.0),
            ));
        }
        h
    }

    #[test]
    fn error_regression_rolls_back() {
        let cfg = DecisionConfig::default();
        let h = history(3, 80, 500.0, 0.8);
        match evaluate(&view(&h, &cfg), &watch()) {
            WatchOutcome::Rollback(p) => {
                assert_eq!(p.action, ACTION_ROLLBACK);
                assert_eq!(p.params[PARAM_TARGET_VERSION], "1");
                assert!(p.params[PARAM_TARGETS].contains("old"));
                assert_eq!(p.evidence.test, "two_proportion_z");
                assert!(p.evidence.p_value.unwrap() < 0.01);
                assert_eq!(p.strategy, Strategy::RegressionRollback);
            }
            other => panic!("expected rollback, got {other:?}"),
        }
    }

    #[test]
    fn latency_regression_rolls_back() {
        let cfg = DecisionConfig::default();
        let h = history(3, 10, 900.0, 0.8);
        match evaluate(&view(&h, &cfg), &watch()) {
            WatchOutcome::Rollback(p) => assert_eq!(p.evidence.test, "welch_t"),
            other => panic!("expected rollback, got {other:?}"),
        }
    }

    #[test]
    fn quality_regression_rolls_back() {
        let cfg = DecisionConfig::default();
        let h = history(3, 10, 500.0, 0.5);
        match evaluate(&view(&h, &cfg), &watch()) {
            WatchOutcome::Rollback(p) => {
                assert_eq!(p.evidence.test, "welch_t");
                assert!(p.evidence.metrics["quality_mean_after"] < 0.6);
            }
            other => panic!("expected rollback, got {other:?}"),
        }
    }

    #[test]
    fn no_significant_change_no_rollback() {
        let cfg = DecisionConfig::default();
        let h = history(3, 11, 505.0, 0.79);
        assert_eq!(evaluate(&view(&h, &cfg), &watch()), WatchOutcome::Fine);
    }

    #[test]
    fn significant_but_immaterial_no_rollback() {
        let cfg = DecisionConfig::default();
        // Latency 10 % up with tiny jitter: significant, not material (< 20 %).
        let h = history(3, 10, 550.0, 0.8);
        assert_eq!(evaluate(&view(&h, &cfg), &watch()), WatchOutcome::Fine);
    }

    #[test]
    fn waits_for_evaluation_windows() {
        let cfg = DecisionConfig::default();
        let h = history(2, 80, 500.0, 0.8);
        assert_eq!(evaluate(&view(&h, &cfg), &watch()), WatchOutcome::Pending);
    }

    fn before_after(h: &History) -> (Vec<RouteWindow>, Vec<RouteWindow>) {
        let r = h.route("app", "chat").unwrap();
        (
            r.windows_before(5 * 60_000, 5),
            r.windows_after(5 * 60_000, 5).unwrap(),
        )
    }

    #[test]
    fn router_steps_are_judged_by_the_routes_constraints() {
        let cfg = DecisionConfig::default();
        let check = |errors: i64, p95: f64, q: f64, floor: f64, slo: f64| {
            let h = history(5, errors, p95, q);
            let (before, after) = before_after(&h);
            compare_constraints(&before, &after, &cfg, Some(floor), Some(slo)).unwrap()
        };
        // Slower and a little worse, within the SLO and above the floor: what the router is for.
        assert!(!check(10, 900.0, 0.76, 0.75, 1000.0).worse);
        // The same step under a floor it now misses, or over the latency SLO: worse.
        let c = check(10, 900.0, 0.76, 0.78, 1000.0);
        assert!(
            c.worse && c.summary.starts_with("quality_mean_below_floor"),
            "{}",
            c.summary
        );
        let c = check(10, 900.0, 0.8, 0.75, 800.0);
        assert!(
            c.worse && c.summary.starts_with("latency_p95_ms_above_slo"),
            "{}",
            c.summary
        );
        // Below the floor already and not lower than before: not made worse.
        assert!(!check(10, 500.0, 0.8, 0.85, 1000.0).worse);
        // Errors: 1 % -> 3 % is within the 5 % SLO; 1 % -> 8 % is not.
        assert!(!check(30, 500.0, 0.8, 0.75, 1000.0).worse);
        let c = check(80, 500.0, 0.8, 0.75, 1000.0);
        assert!(
            c.worse && c.summary.starts_with("error_rate_above_slo"),
            "{}",
            c.summary
        );
    }
}
