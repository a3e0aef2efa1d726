//! Seasonal baseline: what each hour of the day usually looks like, learned from the last days.
//!
//! The spike and change detectors follow a series' level within tens of windows, which is fast
//! enough for a smooth daily cycle but not for patterns that come back at the same hour every
//! day: a tenant's nightly batch job with long prompts lifts a route's cost per call by half for
//! an hour at 01:00, and without a profile of the day the detectors page for it every night.
//!
//! Per series and metric (latency and TTFT percentiles and cost per call on a log scale, quality
//! on its own scale; error rates are proportions judged with their counts and stay unseasoned):
//!
//! * each finished hour's mean is compared with the mean of the 24 hours before it (a trailing
//!   day, which a daily cycle does not move), and that deviation is kept for its hour of the day,
//!   for the last `days` days;
//! * an hour's **offset** is the median of its kept deviations, once it has `min_days` of them:
//!   a pattern seen on most days is learned, a one-off incident (one day out of several) is not;
//! * the detectors judge the value less its hour's offset, and report the baseline plus it
//!   ("expected at this hour"), so the nightly job is normal from its `min_days + 1`-th night on,
//!   while a cost step at 01:00 on top of it still stands out.
//!
//! Deterministic (event time only) and serialisable like every detector state.

use serde::{Deserialize, Serialize};

use crate::baseline::median;
use crate::change::Scale;

const HOUR_MS: i64 = 3_600_000;
const HOURS_PER_DAY: usize = 24;

/// Parameters of the seasonal baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeasonalConfig {
    /// Whether the detectors judge values against an hour-of-day profile.
    pub enabled: bool,
    /// Days of history kept per hour of the day.
    pub days: u32,
    /// Days an hour must have been seen on before its offset is used; with 3 of 7, a pattern of
    /// most days is learned and an incident of one day is not.
    pub min_days: u32,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            days: 7,
            min_days: 3,
        }
    }
}

/// Per-series, per-metric state of the seasonal baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeasonalState {
    /// The hour being accumulated (hours since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hour: Option<i64>,
    /// Sum of its windows' values on the metric's scale.
    #[serde(default)]
    sum: f64,
    /// Its windows.
    #[serde(default)]
    windows: u32,
    /// Means of the last (up to) 24 finished hours, oldest first: the trailing day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trailing: Vec<f64>,
    /// Per hour of the day: deviations of that hour's mean from the trailing day, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deviations: Vec<Vec<f64>>,
    /// Per hour of the day: the offset in use (0 until learned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offsets: Vec<f64>,
}

impl SeasonalState {
    /// The offset of the hour of the day `t_ms` falls in, on the metric's scale.
    pub fn offset(&self, t_ms: i64) -> f64 {
        self.offsets.get(hour_of_day(t_ms)).copied().unwrap_or(0.0)
    }

    /// Folds in a window starting at `t_ms` with value `x` on the metric's scale.
    pub fn learn(&mut self, config: &SeasonalConfig, t_ms: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        let hour = t_ms.div_euclid(HOUR_MS);
        match self.hour {
            Some(current) if current == hour => {}
            Some(current) if current > hour => return, // older than what is being learned
            _ => {
                self.close_hour(config);
                self.hour = Some(hour);
                self.sum = 0.0;
                self.windows = 0;
            }
        }
        self.sum += x;
        self.windows += 1;
    }

    /// Stores the finished hour's deviation from the trailing day and recomputes the offsets.
    fn close_hour(&mut self, config: &SeasonalConfig) {
        let Some(hour) = self.hour else {
            return;
        };
        if self.windows == 0 {
            return;
        }
        let mean = self.sum / f64::from(self.windows);
        // A full trailing day, so that the deviation is from a daily mean and not from a part
        // of the cycle.
        if self.trailing.len() == HOURS_PER_DAY {
            let day_mean = self.trailing.iter().sum::<f64>() / HOURS_PER_DAY as f64;
            if self.deviations.is_empty() {
                self.deviations = vec![Vec::new(); HOURS_PER_DAY];
            }
            let kept = &mut self.deviations[hour_of_day(hour * HOUR_MS)];
            kept.push(mean - day_mean);
            let excess = kept.len().saturating_sub(config.days as usize);
            kept.drain(..excess);
            self.offsets = self
                .deviations
                .iter()
                .map(|d| {
                    if d.len() >= config.min_days as usize {
                        median(&mut d.clone())
                    } else {
                        0.0
                    }
                })
                .collect();
        }
        self.trailing.push(mean);
        let excess = self.trailing.len().saturating_sub(HOURS_PER_DAY);
        self.trailing.drain(..excess);
    }
}

/// `value` moved by `offset` of its metric's scale: times `e^offset` on a log scale, plus
/// `offset` on the others.
pub(crate) fn shift(scale: Scale, value: f64, offset: f64) -> f64 {
    match scale {
        Scale::Log => value * offset.exp(),
        Scale::Linear | Scale::Binomial => value + offset,
    }
}

fn hour_of_day(t_ms: i64) -> usize {
    (t_ms.div_euclid(HOUR_MS).rem_euclid(HOURS_PER_DAY as i64)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200_000;
    const MINUTE: i64 = 60_000;

    /// Feeds one-minute windows of `value(minute since MONDAY)` for days `days`.
    fn feed(state: &mut SeasonalState, days: std::ops::Range<i64>, value: impl Fn(i64) -> f64) {
        let config = SeasonalConfig::default();
        for m in days.start * 24 * 60..days.end * 24 * 60 {
            state.learn(&config, MONDAY + m * MINUTE, value(m));
        }
    }

    /// ln(1.5) at 01:00-02:00 every day, 0 otherwise: a nightly job raising cost by half.
    fn nightly(m: i64) -> f64 {
        if (60..120).contains(&(m % (24 * 60))) {
            1.5_f64.ln()
        } else {
            0.0
        }
    }

    #[test]
    fn a_pattern_of_every_night_is_learned_after_min_days() {
        let mut state = SeasonalState::default();
        // Day 1 fills the trailing day; days 2 to 4 give three deviations per hour.
        feed(&mut state, 0..3, nightly);
        assert_eq!(state.offset(MONDAY + 3 * 86_400_000 + 61 * MINUTE), 0.0);
        feed(&mut state, 3..4, nightly);
        // The job's hour sits ln(1.5) (less its share of the day's mean) above the day.
        let job = state.offset(MONDAY + 61 * MINUTE);
        let expected = 1.5_f64.ln() * 23.0 / 24.0;
        assert!((job - expected).abs() < 1e-9, "offset {job} vs {expected}");
        let other = state.offset(MONDAY + 14 * 60 * MINUTE);
        assert!(other < 0.0 && other > -0.02, "other hours {other}");
    }

    #[test]
    fn an_incident_of_one_day_is_not_learned_and_a_smooth_cycle_is() {
        let mut state = SeasonalState::default();
        let cycle =
            |m: i64| 0.1 * ((m % (24 * 60)) as f64 / (24.0 * 60.0) * std::f64::consts::TAU).cos();
        // A two-hour incident at 14:00 on day 3 only.
        feed(&mut state, 0..7, |m| {
            let incident = (3 * 24 * 60 + 14 * 60..3 * 24 * 60 + 16 * 60).contains(&m);
            cycle(m) + if incident { 0.7 } else { 0.0 }
        });
        for hour in 0..24 {
            let offset = state.offset(MONDAY + hour * 60 * MINUTE);
            // The hour's mean of the cosine over its 60 minutes.
            let mean: f64 = (0..60).map(|m| cycle(hour * 60 + m)).sum::<f64>() / 60.0;
            assert!(
                (offset - mean).abs() < 0.01,
                "hour {hour}: offset {offset}, cycle {mean}"
            );
        }
        assert!(state.deviations.iter().all(|d| d.len() <= 7));
    }
}
