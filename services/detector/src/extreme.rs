//! Range exceedance: how far a value leaves the range of everything seen before it.
//!
//! A value above the highest (or below the lowest) value of a series' history is scored by its
//! distance beyond that range, in units of the range's width: a latency 10 % of the usual spread
//! above its all-time high scores 0.1. The range forgets slowly (both ends move towards the
//! middle by `decay` of their distance per value), so one incident months ago does not make the
//! series blind forever. It needs no distribution and no scale, which is why it ranks well on
//! series of arbitrary units (the NAB benchmark); on window metrics the spike and change
//! detectors, which know their noise, do the alerting.

use serde::{Deserialize, Serialize};

/// Per-series state: the (slowly forgetting) range of past values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeState {
    /// (low, high), once a value has been seen.
    pub range: Option<(f64, f64)>,
}

/// Scores values by their exceedance of the past range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeExceedance {
    /// Fraction of the distance to the middle by which each end moves per value.
    pub decay: f64,
}

impl Default for RangeExceedance {
    fn default() -> Self {
        Self { decay: 1e-4 }
    }
}

impl RangeExceedance {
    /// The exceedance of `value` beyond the range so far, in range widths (0 inside the range,
    /// and for the first value or while the range is a single point); then widens the range.
    pub fn observe(&self, state: &mut RangeState, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let Some((low, high)) = state.range.as_mut() else {
            state.range = Some((value, value));
            return 0.0;
        };
        let width = *high - *low;
        let exceedance = if width > 0.0 {
            (value - *high).max(*low - value).max(0.0) / width
        } else {
            0.0
        };
        let middle = (*high + *low) / 2.0;
        *high -= self.decay * (*high - middle);
        *low += self.decay * (middle - *low);
        *low = low.min(value);
        *high = high.max(value);
        exceedance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_distance_beyond_the_range_in_range_widths() {
        let d = RangeExceedance { decay: 0.0 };
        let mut s = RangeState::default();
        assert_eq!(d.observe(&mut s, 10.0), 0.0);
        assert_eq!(d.observe(&mut s, 10.0), 0.0);
        assert_eq!(d.observe(&mut s, 20.0), 0.0);
        assert_eq!(d.observe(&mut s, 15.0), 0.0);
        assert_eq!(d.observe(&mut s, 25.0), 0.5);
        assert_eq!(d.observe(&mut s, 0.0), 10.0 / 15.0);
        assert_eq!(d.observe(&mut s, f64::NAN), 0.0);
    }

    #[test]
    fn the_range_forgets_slowly() {
        let d = RangeExceedance::default();
        let mut s = RangeState::default();
        d.observe(&mut s, 0.0);
        d.observe(&mut s, 100.0);
        for _ in 0..20_000 {
            d.observe(&mut s, 50.0);
        }
        let (low, high) = s.range.unwrap_or_default();
        assert!(low > 40.0 && high < 60.0, "{low} {high}");
    }
}
