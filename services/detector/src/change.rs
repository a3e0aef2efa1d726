//! Change detection: sustained level shifts (CUSUM) and slow drifts (EWMA control chart).
//!
//! The spike detector ([`crate::RobustEwma`]) judges one window at a time, with a threshold high
//! enough that a noisy window never pages anyone; a cost per call that rises by 1.3x, or a
//! quality mean that slides by 0.05 an hour, never crosses it. These charts accumulate evidence
//! over windows instead, against a *reference* that learns only from in-control windows:
//!
//! * **Scale per metric.** Values are compared on the scale where a change means the same thing
//!   at any level: latency and TTFT percentiles and cost per call on a log scale (a change is a
//!   ratio), quality on its own scale (a change is a difference), error rate as a binomial
//!   proportion judged with its window's call count.
//! * **Noise from the volume.** A window mean of `n` calls varies like `sigma_call^2 / n`: the
//!   per-call variance is learned, the window's variance follows its count, so the night's quiet
//!   windows are not judged by the day's tight ones and a window of 3 calls moves the charts
//!   little. A floor per metric keeps huge windows from alerting on changes nobody cares about.
//! * **CUSUM** (Page 1954) on winsorised standardised residuals finds sustained shifts of about
//!   `2 k` standard deviations and more within `h / (shift - k)` windows; one outlier adds at most
//!   `clip - k`, so single spikes stay the spike detector's business.
//! * **EWMA chart** (Roberts 1959) with a small weight finds drifts too slow for CUSUM's
//!   reference to notice (quality and cost per call by default).
//! * **A new normal.** A shift or drift that has been alarmed for `adopt_after_windows` windows is
//!   acknowledged: the reference jumps to the recent level and the alarm ends, so a permanent
//!   price change pages once, not forever.
//!
//! Like every detector here it is deterministic and its state serialises, so replaying the
//! `windows` topic reproduces the same anomalies.

use std::collections::BTreeMap;

use llmopt_events::Direction;
use serde::{Deserialize, Serialize};

use crate::baseline::{direction_of, median};
use crate::metrics::Metric;

/// How the change detector compares values of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Differences on the value's own scale (quality scores, NAB series).
    Linear,
    /// Ratios: compared as natural logarithms (latency, cost).
    Log,
    /// A proportion of the window's calls, with binomial noise (error rate).
    Binomial,
}

/// The kinds of change this detector reports, each with its own alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A sustained level shift (CUSUM).
    Shift,
    /// A slow drift (EWMA chart).
    Drift,
}

impl ChangeKind {
    /// Both kinds, in reporting order.
    pub const ALL: [ChangeKind; 2] = [ChangeKind::Shift, ChangeKind::Drift];

    /// Machine name, used in anomaly ids and the `detector` label.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Shift => "shift",
            ChangeKind::Drift => "drift",
        }
    }

    /// Suffix of the alert name (`CostPerCallLevelShift`, `QualityMeanDrift`).
    pub fn alert_suffix(self) -> &'static str {
        match self {
            ChangeKind::Shift => "LevelShift",
            ChangeKind::Drift => "Drift",
        }
    }
}

/// Parameters of the change detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeConfig {
    /// Whether shifts and drifts are detected at all.
    pub enabled: bool,
    /// Prefix of the detector names in anomalies (`{name}-shift`, `{name}-drift`).
    pub name: String,
    /// Windows collected before the charts start; the reference starts at their median.
    pub warmup_windows: u32,
    /// Weight of an in-control window in the reference level, in (0, 1]. Small enough that a
    /// drift is not absorbed before the charts see it, large enough to follow a daily cycle.
    pub alpha: f64,
    /// Weight of an in-control window in the per-call variance, in (0, 1].
    pub variance_alpha: f64,
    /// Standardised residuals are clipped to +-clip before they enter the charts.
    pub clip: f64,
    /// CUSUM allowance `k`, in standard deviations (half the smallest shift worth finding).
    pub cusum_k: f64,
    /// CUSUM decision interval `h`, in standard deviations.
    pub cusum_h: f64,
    /// Rate ratio the error rate's CUSUM is tuned to find (a likelihood-ratio CUSUM on the
    /// window's failures, for any volume).
    pub binomial_ratio: f64,
    /// Decision interval of the error rate's CUSUM, in log-likelihood units (nats).
    pub binomial_h: f64,
    /// EWMA chart weight `lambda`, in (0, 1].
    pub drift_lambda: f64,
    /// EWMA chart control limit `L`, in standard deviations of the chart statistic.
    pub drift_limit: f64,
    /// Metrics watched by the drift chart (shifts are watched on every detector metric).
    pub drift_metrics: Vec<Metric>,
    /// Windows a shift or drift stays alarmed before its level becomes the new reference.
    pub adopt_after_windows: u32,
    /// Smallest change worth reporting per metric, as a standard deviation on the metric's scale
    /// (log scale for latency and cost: 0.03 is 3 %). Keeps windows of thousands of calls from
    /// alarming on changes of a fraction of a percent.
    pub floor: BTreeMap<Metric, f64>,
}

impl Default for ChangeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "cusum-ewma".into(),
            warmup_windows: 20,
            alpha: 0.05,
            variance_alpha: 0.05,
            clip: 5.0,
            cusum_k: 0.75,
            cusum_h: 8.0,
            binomial_ratio: 3.0,
            binomial_h: 10.0,
            drift_lambda: 0.05,
            drift_limit: 4.0,
            drift_metrics: vec![Metric::CostPerCall, Metric::QualityMean],
            adopt_after_windows: 30,
            floor: BTreeMap::from([
                (Metric::ErrorRate, 0.003),
                (Metric::LatencyP95Ms, 0.04),
                (Metric::CostPerCall, 0.02),
                (Metric::QualityMean, 0.004),
                (Metric::TtftP95Ms, 0.04),
            ]),
        }
    }
}

impl ChangeConfig {
    /// Floor for metrics missing from `floor`.
    pub const DEFAULT_FLOOR: f64 = 1e-6;

    /// The floor of `metric`.
    pub fn floor_of(&self, metric: Metric) -> f64 {
        self.floor
            .get(&metric)
            .copied()
            .unwrap_or(Self::DEFAULT_FLOOR)
    }

    /// Detector name of a kind, as in `Anomaly.detector`.
    pub fn detector_name(&self, kind: ChangeKind) -> String {
        format!("{}-{}", self.name, kind.name())
    }
}

/// The scale each metric is compared on.
pub fn scale_of(metric: Metric) -> Scale {
    match metric {
        Metric::ErrorRate => Scale::Binomial,
        Metric::LatencyP95Ms | Metric::TtftP95Ms | Metric::CostPerCall => Scale::Log,
        Metric::QualityMean => Scale::Linear,
    }
}

/// Per-series, per-metric state of the change detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeState {
    /// (value on the metric's scale, calls) collected during warm-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<(f64, f64)>,
    /// The reference, once warm-up is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// What "normal" is, and the charts' statistics against it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Reference level on the metric's scale.
    pub level: f64,
    /// Variance of one call's value on the metric's scale (unused for binomial metrics).
    pub call_variance: f64,
    /// Level of the last few windows, in control or not: the new normal once adopted.
    pub recent: f64,
    /// Upper CUSUM statistic.
    pub up: f64,
    /// Lower CUSUM statistic.
    pub down: f64,
    /// EWMA chart statistic (mean standardised residual).
    pub ewma: f64,
    /// Consecutive alarmed windows (either kind).
    pub alarmed: u32,
    /// Calls behind the pooled reference rate of a binomial metric, exponentially forgotten.
    #[serde(default)]
    pub pooled_calls: f64,
}

/// One kind's verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeVerdict {
    /// The kind of change.
    pub kind: ChangeKind,
    /// The value, on the metric's own scale.
    pub value: f64,
    /// The reference it was compared with, on the metric's own scale.
    pub baseline: f64,
    /// The chart statistic divided by its limit (signed: negative when below): above 1 in
    /// magnitude means alarmed.
    pub score: f64,
    /// Whether the chart is beyond its limit.
    pub anomalous: bool,
}

impl ChangeVerdict {
    /// Which way the value left its reference.
    pub fn direction(&self) -> Direction {
        direction_of(self.score)
    }
}

/// The change detector: parameters only; state lives in [`ChangeState`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeDetector {
    config: ChangeConfig,
}

/// Share of `alpha` with which a suspicious (not alarmed) window moves the reference.
const SUSPICIOUS_WEIGHT: f64 = 0.25;

/// Multiplier turning the median of squared standard normal values into their mean.
const CHI2_1_MEDIAN: f64 = 0.454_936;

impl ChangeDetector {
    /// A detector with these parameters.
    pub fn new(config: ChangeConfig) -> Self {
        Self { config }
    }

    /// Its parameters.
    pub fn config(&self) -> &ChangeConfig {
        &self.config
    }

    /// Scores one window's value of `metric` (with `calls` calls behind it) and folds it into
    /// `state`. Empty while warming up or for values that cannot be compared.
    pub fn observe(
        &self,
        metric: Metric,
        state: &mut ChangeState,
        value: f64,
        calls: f64,
    ) -> Vec<ChangeVerdict> {
        let drift = self.config.drift_metrics.contains(&metric);
        self.observe_on(
            scale_of(metric),
            self.config.floor_of(metric),
            drift,
            state,
            value,
            calls,
        )
    }

    /// [`ChangeDetector::observe`] for a series outside the metric catalogue (a benchmark
    /// series), with its scale, floor and whether the drift chart watches it.
    pub fn observe_on(
        &self,
        scale: Scale,
        floor: f64,
        watch_drift: bool,
        state: &mut ChangeState,
        value: f64,
        calls: f64,
    ) -> Vec<ChangeVerdict> {
        let Some(x) = to_scale(scale, value) else {
            return Vec::new();
        };
        if !calls.is_finite() || calls <= 0.0 {
            return Vec::new();
        }
        let c = &self.config;
        let Some(r) = state.reference.as_mut() else {
            state.warmup.push((x, calls));
            if state.warmup.len() >= c.warmup_windows as usize {
                state.reference = Some(initial_reference(scale, &state.warmup));
                state.warmup = Vec::new();
            }
            return Vec::new();
        };

        let residual = x - r.level;
        let z = standardised(scale, r, x, calls, floor);
        let zc = z.clamp(-c.clip, c.clip);
        let (up, down, limit) = if scale == Scale::Binomial {
            let (up, down) = bernoulli_log_likelihood_ratios(r.level, x, calls, floor, c);
            (up, down, c.binomial_h)
        } else {
            (zc - c.cusum_k, -zc - c.cusum_k, c.cusum_h)
        };
        // Capped so that the chart falls back below its limit soon after the incident's end
        // instead of paying off an arbitrarily long debt.
        let cap = 1.25 * limit;
        r.up = (r.up + up).clamp(0.0, cap);
        r.down = (r.down + down).clamp(0.0, cap);
        r.ewma = (1.0 - c.drift_lambda) * r.ewma + c.drift_lambda * zc;
        r.recent += 0.3 * (x - r.recent);

        let shift_score = if r.up >= r.down {
            r.up / limit
        } else {
            -r.down / limit
        };
        let ewma_sigma = (c.drift_lambda / (2.0 - c.drift_lambda)).sqrt();
        let drift_score = r.ewma / (c.drift_limit * ewma_sigma);
        let baseline = from_scale(scale, r.level);
        let mut verdicts = vec![ChangeVerdict {
            kind: ChangeKind::Shift,
            value,
            baseline,
            score: shift_score,
            anomalous: shift_score.abs() > 1.0,
        }];
        if watch_drift {
            verdicts.push(ChangeVerdict {
                kind: ChangeKind::Drift,
                value,
                baseline,
                score: drift_score,
                anomalous: drift_score.abs() > 1.0,
            });
        }

        let suspicious = verdicts.iter().any(|v| v.score.abs() > 0.5);
        if verdicts.iter().any(|v| v.anomalous) {
            // Counted until the charts are quiet again, so an alarm that flickers around its
            // limit is acknowledged as well as a steady one.
            r.alarmed = r.alarmed.saturating_add(1);
            if r.alarmed >= c.adopt_after_windows {
                // Acknowledged: the recent level is the new normal.
                r.level = r.recent;
                r.up = 0.0;
                r.down = 0.0;
                r.ewma = 0.0;
                r.alarmed = 0;
            }
        } else if scale == Scale::Binomial {
            // A proportion is pooled over calls, every window that is not alarmed included:
            // only windows with failures can look suspicious, so leaving those out would bias
            // the reference rate towards zero and turn ordinary failures into shifts.
            if !suspicious {
                r.alarmed = 0;
            }
            // Slower than the other scales (a rate needs many windows to be known), so that a
            // burst building towards its alarm is not absorbed on the way.
            let decay = 1.0 - c.alpha * SUSPICIOUS_WEIGHT;
            let pooled = decay * r.pooled_calls + calls;
            r.level = (decay * r.pooled_calls * r.level + calls * x) / pooled;
            r.pooled_calls = pooled;
        } else if z.abs() <= c.clip {
            // The reference learns at full speed from windows that raise no suspicion; while a
            // chart is past half its limit a shift may be building, so it learns at a quarter
            // of the speed: slow enough not to absorb the shift, fast enough that a reference
            // a little off (a warm-up on unlucky windows) cannot hold a chart up forever.
            let weight = if suspicious {
                c.alpha * SUSPICIOUS_WEIGHT
            } else {
                r.alarmed = 0;
                c.alpha
            };
            r.level += weight * residual;
            let per_call = (residual * residual * calls).min(c.clip * c.clip * r.call_variance);
            r.call_variance += c.variance_alpha * (per_call - r.call_variance);
        }
        verdicts
    }
}

/// The value on its scale, or `None` when it has no place there (a non-positive latency on a log
/// scale, a proportion outside [0, 1]).
pub(crate) fn to_scale(scale: Scale, value: f64) -> Option<f64> {
    if !value.is_finite() {
        return None;
    }
    match scale {
        Scale::Linear => Some(value),
        Scale::Log => (value > 0.0).then(|| value.ln()),
        Scale::Binomial => (0.0..=1.0).contains(&value).then_some(value),
    }
}

fn from_scale(scale: Scale, x: f64) -> f64 {
    match scale {
        Scale::Log => x.exp(),
        Scale::Linear | Scale::Binomial => x,
    }
}

/// Standard deviation of one window's value around the reference.
/// CUSUM increments of a proportion: the log-likelihood ratios of the window's failures under a
/// rate `binomial_ratio` times the reference (up) and 1/`binomial_ratio` of it (down) against the
/// reference itself, each alternative at least `floor` away from it.
///
/// With a handful of failures per window a shift of a few standard deviations never shows in a
/// single window, so a CUSUM on standardised residuals with a fixed allowance cannot see it; the
/// likelihood ratio (Page's CUSUM for Bernoulli data) accumulates the evidence of any volume:
/// 0.6 failures a window against 0.15 expected alarms within an hour, 6 against 2 in a few
/// windows.
fn bernoulli_log_likelihood_ratios(
    reference: f64,
    rate: f64,
    calls: f64,
    floor: f64,
    c: &ChangeConfig,
) -> (f64, f64) {
    let p0 = reference.clamp(1e-4, 0.5);
    let failures = rate * calls;
    let llr =
        |p1: f64| failures * (p1 / p0).ln() + (calls - failures) * ((1.0 - p1) / (1.0 - p0)).ln();
    let up = (p0 * c.binomial_ratio).max(p0 + floor).min(0.99);
    let down = (p0 / c.binomial_ratio).min(p0 - floor).max(p0 / 100.0);
    (llr(up), llr(down))
}

/// The window's standardised residual against the reference: its difference from the reference
/// over its standard deviation (the learned per-call variance over its calls, and the floor).
///
/// A proportion's failures are counts, often a handful per window, where a normal approximation
/// makes 2 failures against 0.3 expected look like 3 standard deviations (Poisson: 1.8). Counts
/// are therefore compared on Anscombe's square-root scale, `2 (sqrt(k + 3/8) - sqrt(np + 3/8))`,
/// where they are close to unit normal, and shrunk by the floor like the other scales.
fn standardised(scale: Scale, r: &Reference, x: f64, calls: f64, floor: f64) -> f64 {
    match scale {
        Scale::Binomial => {
            // Judged against the reference rate, kept away from 0 so that the first failure
            // after a clean stretch is not an infinite surprise.
            let p = r.level.clamp(1e-3, 1.0 - 1e-3);
            let binomial = p * (1.0 - p) / calls;
            let shrink = (binomial / (binomial + floor * floor)).sqrt();
            let failures = x * calls;
            let expected = p * calls;
            2.0 * ((failures + 0.375).sqrt() - (expected + 0.375).sqrt()) * shrink
        }
        Scale::Linear | Scale::Log => {
            let sigma = (r.call_variance / calls + floor * floor).sqrt();
            (x - r.level) / sigma
        }
    }
}

/// Reference from warm-up values: median level (pooled over calls for proportions), robust
/// per-call variance (median of squared deviations scaled by each window's calls, corrected to a
/// mean for normal data).
fn initial_reference(scale: Scale, warmup: &[(f64, f64)]) -> Reference {
    let pooled_calls: f64 = warmup.iter().map(|(_, n)| n).sum();
    let level = if scale == Scale::Binomial {
        // The median of window rates is 0 whenever most windows have no failure.
        warmup.iter().map(|(x, n)| x * n).sum::<f64>() / pooled_calls
    } else {
        let mut xs: Vec<f64> = warmup.iter().map(|(x, _)| *x).collect();
        median(&mut xs)
    };
    let mut per_call: Vec<f64> = warmup
        .iter()
        .map(|(x, n)| (x - level) * (x - level) * n)
        .collect();
    let call_variance = median(&mut per_call) / CHI2_1_MEDIAN;
    Reference {
        level,
        call_variance,
        recent: level,
        up: 0.0,
        down: 0.0,
        ewma: 0.0,
        alarmed: 0,
        pooled_calls,
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Window means of `calls` calls whose per-call values are lognormal around `mean` with a
    /// log standard deviation of `sigma`.
    fn lognormal_mean(rng: &mut ChaCha8Rng, mean: f64, sigma: f64, calls: u32) -> f64 {
        let sum: f64 = (0..calls)
            .map(|_| {
                let z: f64 = (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
                mean * (sigma * z - sigma * sigma / 2.0).exp()
            })
            .sum();
        sum / f64::from(calls)
    }

    fn alarmed(verdicts: &[ChangeVerdict], kind: ChangeKind) -> bool {
        verdicts.iter().any(|v| v.kind == kind && v.anomalous)
    }

    #[test]
    fn a_cost_step_of_1_3x_is_found_within_a_few_windows_and_quiet_stays_quiet() {
        let d = ChangeDetector::new(ChangeConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut state = ChangeState::default();
        let mut false_alarms = 0;
        for i in 0..1440 {
            // A daily cycle in volume: 20 to 180 calls a minute.
            let calls = 100 + (80.0 * (f64::from(i) / 1440.0 * std::f64::consts::TAU).sin()) as u32;
            let v = lognormal_mean(&mut rng, 0.002, 0.6, calls);
            let verdicts = d.observe(Metric::CostPerCall, &mut state, v, f64::from(calls));
            false_alarms += usize::from(verdicts.iter().any(|v| v.anomalous));
        }
        assert_eq!(false_alarms, 0, "alarms on a quiet day");
        let first = (0..30).find(|_| {
            let v = lognormal_mean(&mut rng, 0.0026, 0.6, 100);
            alarmed(
                &d.observe(Metric::CostPerCall, &mut state, v, 100.0),
                ChangeKind::Shift,
            )
        });
        assert!(
            first.is_some_and(|w| w <= 5),
            "found after {first:?} windows"
        );
    }

    #[test]
    fn a_slow_quality_drift_is_found_before_the_fall_reaches_0_03() {
        let d = ChangeDetector::new(ChangeConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut state = ChangeState::default();
        let quality = |rng: &mut ChaCha8Rng, mean: f64| {
            let calls = 60;
            (0..calls)
                .map(|_| (mean + 0.15 * (rng.gen::<f64>() - 0.5) * 3.4).clamp(0.0, 1.0))
                .sum::<f64>()
                / f64::from(calls)
        };
        for _ in 0..120 {
            let v = quality(&mut rng, 0.85);
            assert!(d
                .observe(Metric::QualityMean, &mut state, v, 60.0)
                .iter()
                .all(|v| !v.anomalous));
        }
        // 0.05 per hour: the fall reaches 0.03 after 36 windows.
        let found = (1..=120).find(|m| {
            let v = quality(&mut rng, 0.85 - 0.05 * f64::from(*m) / 60.0);
            let verdicts = d.observe(Metric::QualityMean, &mut state, v, 60.0);
            verdicts
                .iter()
                .any(|v| v.anomalous && v.direction() == Direction::Down)
        });
        // Within the hour after the cumulative fall reached 0.03 (the bar).
        assert!(
            found.is_some_and(|m| m <= 36 + 60),
            "found after {found:?} windows"
        );
    }

    #[test]
    fn error_bursts_are_judged_with_their_counts() {
        let d = ChangeDetector::new(ChangeConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut state = ChangeState::default();
        let rate = |rng: &mut ChaCha8Rng, p: f64, calls: u32| {
            f64::from((0..calls).filter(|_| rng.gen::<f64>() < p).count() as u32) / f64::from(calls)
        };
        for _ in 0..600 {
            let v = rate(&mut rng, 0.01, 400);
            assert!(d
                .observe(Metric::ErrorRate, &mut state, v, 400.0)
                .iter()
                .all(|v| !v.anomalous));
        }
        // A window of 3 calls with 1 failure is 33 % but says little.
        assert!(d
            .observe(Metric::ErrorRate, &mut state, 1.0 / 3.0, 3.0)
            .iter()
            .all(|v| !v.anomalous));
        // 3x the base rate at 400 calls a window: about 4 standard deviations.
        let found = (1..=10).find(|_| {
            let v = rate(&mut rng, 0.03, 400);
            alarmed(
                &d.observe(Metric::ErrorRate, &mut state, v, 400.0),
                ChangeKind::Shift,
            )
        });
        assert!(
            found.is_some_and(|w| w <= 3),
            "found after {found:?} windows"
        );
    }

    #[test]
    fn a_permanent_shift_becomes_the_new_normal() {
        let config = ChangeConfig::default();
        let adopt = config.adopt_after_windows;
        let d = ChangeDetector::new(config);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut state = ChangeState::default();
        for _ in 0..100 {
            let v = lognormal_mean(&mut rng, 800.0, 0.3, 100);
            d.observe(Metric::LatencyP95Ms, &mut state, v, 100.0);
        }
        let alarms: Vec<bool> = (0..200)
            .map(|_| {
                let v = lognormal_mean(&mut rng, 1400.0, 0.3, 100);
                alarmed(
                    &d.observe(Metric::LatencyP95Ms, &mut state, v, 100.0),
                    ChangeKind::Shift,
                )
            })
            .collect();
        let first = alarms.iter().position(|a| *a).unwrap_or(usize::MAX);
        assert!(first <= 3, "first alarm at {first}");
        assert!(alarms[first..first + adopt as usize - 1].iter().all(|a| *a));
        assert!(
            alarms[100..].iter().all(|a| !a),
            "the new level still alarms"
        );
        let level = state
            .reference
            .map(|r| from_scale(Scale::Log, r.level))
            .unwrap_or_default();
        assert!((level / 1400.0 - 1.0).abs() < 0.05, "reference {level}");
    }

    #[test]
    fn warm_up_then_state_round_trips_through_serde() {
        let d = ChangeDetector::new(ChangeConfig::default());
        let mut state = ChangeState::default();
        for i in 0..25 {
            let verdicts = d.observe(
                Metric::LatencyP95Ms,
                &mut state,
                1000.0 + f64::from(i),
                50.0,
            );
            assert_eq!(verdicts.is_empty(), i < 20, "window {i}");
        }
        assert!(d
            .observe(Metric::LatencyP95Ms, &mut state, -1.0, 50.0)
            .is_empty());
        assert!(d
            .observe(Metric::LatencyP95Ms, &mut state, f64::NAN, 50.0)
            .is_empty());
        let json = serde_json::to_string(&state).unwrap_or_default();
        let back: ChangeState = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, state);
    }
}
