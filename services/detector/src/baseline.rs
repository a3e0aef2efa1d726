//! Baseline detectors: what a metric usually is, and how far from that the latest window lies.
//!
//! The detector core keeps one state per (series, metric) and hands it to a [`BaselineDetector`];
//! the detector itself holds only parameters. Splitting parameters from state lets the core
//! snapshot every series with serde and lets better detectors (seasonal, changepoint, ...) plug in
//! without touching the alerting logic.

use std::fmt::Debug;

use llmopt_events::Direction;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::RobustEwmaConfig;
use crate::metrics::Metric;

/// Factor turning a median absolute deviation into a standard deviation for normal data, so
/// that thresholds read like z-scores.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// A streaming, per-series baseline model.
///
/// Implementations must be deterministic: the same observations in the same order give the same
/// states and scores, since replaying a topic must reproduce the same anomalies.
pub trait BaselineDetector: Send + 'static {
    /// Per-series state, serialisable so that the core can snapshot and restore it.
    type State: Clone + Default + Debug + PartialEq + Serialize + DeserializeOwned + Send + 'static;

    /// Name written into `Anomaly.detector` and anomaly ids.
    fn name(&self) -> &str;

    /// Scores `value` (the next window's value of `metric`) against `state` and then folds it
    /// into `state`.
    fn observe(&self, metric: Metric, state: &mut Self::State, value: f64) -> Observation;
}

/// What a baseline detector made of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Still learning: no score yet, and never an anomaly.
    WarmingUp {
        /// Values seen so far, this one included.
        seen: u32,
        /// Values needed before scoring starts.
        needed: u32,
    },
    /// The value was not a finite number and was ignored.
    Skipped,
    /// The value was scored.
    Scored(Score),
}

/// The evidence behind a verdict, as published in an `Anomaly`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The value scored.
    pub value: f64,
    /// The baseline it was compared with (before this value updated it).
    pub baseline: f64,
    /// The scale the deviation was divided by.
    pub scale: f64,
    /// `(value - baseline) / scale`.
    pub score: f64,
    /// Whether |score| exceeded the detector's threshold.
    pub anomalous: bool,
}

impl Score {
    /// Which way the value left its baseline.
    pub fn direction(&self) -> Direction {
        direction_of(self.score)
    }
}

/// The direction of a signed score: down below zero, up otherwise.
pub(crate) fn direction_of(score: f64) -> Direction {
    if score < 0.0 {
        Direction::Down
    } else {
        Direction::Up
    }
}

/// Robust EWMA baseline with an EWMA of absolute deviations as its scale.
///
/// * Warm-up: the first `warmup_windows` values are only collected; the baseline starts at their
///   median and the scale at their median absolute deviation, so an outlier during warm-up does
///   not poison the start.
/// * Score: `(value - baseline) / (1.4826 * mad + max(relative_floor * |baseline|,
///   absolute_floor[metric]))`; the floor keeps flat series (an error rate of exactly 0) from
///   producing infinite scores.
/// * Update: a normal value moves baseline and mad with weight `alpha`; an anomalous one with
///   `alpha * anomalous_weight`, and its deviation is clipped to `threshold * scale` for the mad
///   update. A sustained incident therefore stays anomalous for a while (about 10 to 20 windows
///   with the defaults) instead of being absorbed at once, yet a permanent level shift eventually
///   becomes the new normal.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustEwma {
    config: RobustEwmaConfig,
}

impl RobustEwma {
    /// A detector with these parameters (validated by [`crate::DetectorConfig::validate`]).
    pub fn new(config: RobustEwmaConfig) -> Self {
        Self { config }
    }

    /// Its parameters.
    pub fn config(&self) -> &RobustEwmaConfig {
        &self.config
    }
}

/// Per-series state of [`RobustEwma`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RobustEwmaState {
    /// Values collected during warm-up; emptied once the level is initialised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<f64>,
    /// The learned level, once warm-up is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// Learned location and scale of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// EWMA baseline.
    pub baseline: f64,
    /// EWMA of absolute deviations from the baseline.
    pub mad: f64,
    /// Values scored since warm-up.
    pub scored: u64,
}

impl BaselineDetector for RobustEwma {
    type State = RobustEwmaState;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&self, metric: Metric, state: &mut RobustEwmaState, value: f64) -> Observation {
        if !value.is_finite() {
            return Observation::Skipped;
        }
        let c = &self.config;
        let Some(level) = state.level.as_mut() else {
            state.warmup.push(value);
            let seen = u32::try_from(state.warmup.len()).unwrap_or(u32::MAX);
            if seen >= c.warmup_windows {
                let baseline = median(&mut state.warmup);
                let mut deviations: Vec<f64> =
                    state.warmup.iter().map(|v| (v - baseline).abs()).collect();
                let mad = median(&mut deviations);
                state.level = Some(Level {
                    baseline,
                    mad,
                    scored: 0,
                });
                state.warmup = Vec::new();
            }
            return Observation::WarmingUp {
                seen,
                needed: c.warmup_windows,
            };
        };

        let deviation = value - level.baseline;
        let floor = (c.relative_floor * level.baseline.abs()).max(c.absolute_floor_of(metric));
        let scale = MAD_TO_SIGMA * level.mad + floor;
        let score = deviation / scale;
        let anomalous = score.abs() > c.threshold;
        let result = Score {
            value,
            baseline: level.baseline,
            scale,
            score,
            anomalous,
        };

        let (weight, abs_deviation) = if anomalous {
            (
                c.alpha * c.anomalous_weight,
                deviation.abs().min(c.threshold * scale),
            )
        } else {
            (c.alpha, deviation.abs())
        };
        level.baseline += weight * deviation;
        level.mad += weight * (abs_deviation - level.mad);
        level.scored = level.scored.saturating_add(1);
        Observation::Scored(result)
    }
}

/// Median of finite values (sorts in place); 0 for an empty slice.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> RobustEwma {
        RobustEwma::new(RobustEwmaConfig::default())
    }

    fn scored(obs: Observation) -> Score {
        match obs {
            Observation::Scored(s) => s,
            other => panic!("expected a score, got {other:?}"),
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn warm_up_ignores_an_outlier_and_then_scores() {
        let d = detector();
        let mut state = RobustEwmaState::default();
        for (i, v) in [
            100.0, 102.0, 98.0, 5000.0, 101.0, 99.0, 100.0, 103.0, 97.0, 100.0,
        ]
        .into_iter()
        .enumerate()
        {
            let obs = d.observe(Metric::LatencyP95Ms, &mut state, v);
            assert_eq!(
                obs,
                Observation::WarmingUp {
                    seen: i as u32 + 1,
                    needed: 10
                }
            );
        }
        let level = state.level.unwrap_or_else(|| panic!("level not set"));
        assert_eq!(level.baseline, 100.0);
        let s = scored(d.observe(Metric::LatencyP95Ms, &mut state, 101.0));
        assert!(!s.anomalous, "{s:?}");
        let s = scored(d.observe(Metric::LatencyP95Ms, &mut state, 300.0));
        assert!(s.anomalous && s.direction() == Direction::Up, "{s:?}");
    }

    #[test]
    fn sustained_shift_stays_anomalous_for_a_while_then_adapts() {
        let d = detector();
        let mut state = RobustEwmaState::default();
        for i in 0..50 {
            d.observe(
                Metric::LatencyP95Ms,
                &mut state,
                1000.0 + f64::from(i % 5) * 10.0,
            );
        }
        let verdicts: Vec<bool> = (0..200)
            .map(|_| scored(d.observe(Metric::LatencyP95Ms, &mut state, 2000.0)).anomalous)
            .collect();
        let anomalous_run = verdicts.iter().take_while(|a| **a).count();
        assert!(anomalous_run >= 5, "run {anomalous_run}");
        assert!(!verdicts[199], "never adapted to the new level");
    }

    #[test]
    fn floor_keeps_flat_zero_series_finite() {
        let d = detector();
        let mut state = RobustEwmaState::default();
        for _ in 0..20 {
            d.observe(Metric::ErrorRate, &mut state, 0.0);
        }
        let s = scored(d.observe(Metric::ErrorRate, &mut state, 0.02));
        assert!(s.score.is_finite() && !s.anomalous, "{s:?}");
        let s = scored(d.observe(Metric::ErrorRate, &mut state, 0.2));
        assert!(s.anomalous, "{s:?}");
        assert_eq!(
            d.observe(Metric::ErrorRate, &mut state, f64::NAN),
            Observation::Skipped
        );
    }
}
